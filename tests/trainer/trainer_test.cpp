#include <gtest/gtest.h>

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>

#include <mlx/ops.h>
#include <mlx/random.h>
#include <mlx/transforms.h>
#include <nlohmann/json.hpp>

#include "ft/core/error.h"
#include "ft/models/registry.h"
#include "ft/train/checkpoint.h"
#include "ft/train/losses.h"
#include "ft/train/optimizer.h"
#include "ft/train/trainer.h"
#include "tests/test_util.h"
#include "tests/trainer/trainer_util.h"

extern char** environ;

namespace mx = mlx::core;
namespace fs = std::filesystem;
using ft::train::StopReason;
using ft::train::Trainer;
using ft::train::TrainerConfig;
using namespace ft::testing::trainer;

namespace {

// The records without their timing fields, which differ between runs.
std::vector<nlohmann::json> without_timing(std::vector<nlohmann::json> records) {
  for (auto& r : records) {
    r.erase("tokens_per_second");
    r.erase("peak_memory");
  }
  return records;
}

// 12 samples, batch 2: 6 micro-batches an epoch, 3 steps an epoch with accumulation 2.
TrainerConfig resume_config(const fs::path& dir) {
  TrainerConfig c;
  c.epochs = 3;
  c.batch_size = 2;
  c.grad_accumulation = 2;
  c.max_grad_norm = 1.0f;
  c.seed = 11;
  c.eval_every = 2;
  c.output_dir = dir;
  c.metrics_path = dir / "metrics.jsonl";
  c.progress = false;
  return c;
}

void expect_same_steps(const std::vector<ft::train::StepRecord>& a,
                       const std::vector<ft::train::StepRecord>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].step, b[i].step);
    EXPECT_EQ(a[i].loss, b[i].loss) << "step " << a[i].step;
    // A step skipped for overflow has a NaN or inf norm.
    EXPECT_TRUE(a[i].grad_norm == b[i].grad_norm ||
                (std::isnan(a[i].grad_norm) && std::isnan(b[i].grad_norm)))
        << "step " << a[i].step << ": " << a[i].grad_norm << " vs " << b[i].grad_norm;
    EXPECT_EQ(a[i].learning_rate, b[i].learning_rate) << "step " << a[i].step;
    EXPECT_EQ(a[i].tokens, b[i].tokens) << "step " << a[i].step;
  }
}

TEST(Trainer, InterruptedAndResumedRunMatchesUninterruptedBitForBit) {
  // Bit for bit is a CPU promise: MLX's CUDA kernels may round differently from run to
  // run (atomic accumulations), so on a GPU machine this runs on the CPU too.
  ft::testing::OnCpu cpu;
  auto train = random_samples(12, 1);
  auto valid = random_samples(5, 2);
  fs::path dir_a = fresh_dir("full"), dir_b = fresh_dir("parts");

  TrainingRun full(train, &valid, resume_config(dir_a));
  EXPECT_EQ(full.trainer->total_steps(), 9);
  auto whole = full.trainer->run();
  EXPECT_EQ(whole.reason, StopReason::finished);
  ASSERT_EQ(whole.steps.size(), 9u);
  // The losses must change over the run, or the comparison below would prove little.
  EXPECT_NE(whole.steps.front().loss, whole.steps.back().loss);

  // Part 1: a stop request during step 2 ends the run after it, with a checkpoint.
  std::vector<ft::train::StepRecord> pieced;
  {
    TrainingRun part(train, &valid, resume_config(dir_b));
    part.trainer->on_step([](const ft::train::StepRecord& r) {
      if (r.step == 2) ft::train::request_stop();
    });
    auto r = part.trainer->run();
    EXPECT_EQ(r.reason, StopReason::stop_requested);
    EXPECT_EQ(r.step, 2);
    EXPECT_FALSE(ft::train::stop_requested());
    pieced.insert(pieced.end(), r.steps.begin(), r.steps.end());
  }
  // Part 2: a fresh process resumes and runs three steps, crossing into the second epoch.
  {
    TrainerConfig c = resume_config(dir_b);
    c.max_steps_this_run = 3;
    TrainingRun part(train, &valid, c);
    EXPECT_EQ(part.trainer->resume(), 2);
    auto r = part.trainer->run();
    EXPECT_EQ(r.reason, StopReason::step_limit);
    EXPECT_EQ(r.step, 5);
    pieced.insert(pieced.end(), r.steps.begin(), r.steps.end());
  }
  // Part 3: resumes and finishes.
  TrainingRun last(train, &valid, resume_config(dir_b));
  EXPECT_EQ(last.trainer->resume(), 5);
  auto r = last.trainer->run();
  EXPECT_EQ(r.reason, StopReason::finished);
  pieced.insert(pieced.end(), r.steps.begin(), r.steps.end());

  expect_same_steps(whole.steps, pieced);
  expect_same_params(full.model.parameters(), last.model.parameters());
  expect_same_params(full.optimizer->state(), last.optimizer->state());
  EXPECT_EQ(without_timing(read_jsonl(dir_a / "metrics.jsonl")),
            without_timing(read_jsonl(dir_b / "metrics.jsonl")));
  // 9 steps and 4 evaluations.
  EXPECT_EQ(read_jsonl(dir_a / "metrics.jsonl").size(), 13u);
  fs::remove_all(dir_a);
  fs::remove_all(dir_b);
}

// float16 with dynamic loss scaling: the f32 masters and the scaler's state are in the
// checkpoint, so a resumed run repeats the skipped steps and the scale changes exactly.
TEST(Trainer, Float16RunWithLossScalingResumesBitForBit) {
  ft::testing::OnCpu cpu;
  auto train = random_samples(12, 1);
  auto valid = random_samples(5, 2);
  fs::path dir_a = fresh_dir("f16_full"), dir_b = fresh_dir("f16_parts");
  auto config = [](const fs::path& dir) {
    TrainerConfig c = resume_config(dir);
    // Large enough that the first steps overflow, a short interval so that it grows again:
    // the scales run 4096 (skip), 2048 (skip), 1024, 1024, 2048 (skip), ...
    c.loss_scale = ft::LossScaleConfig{.initial_scale = 4096.0f, .growth_interval = 2};
    return c;
  };
  TrainingRun full(train, &valid, config(dir_a), adamw(), mx::float16);
  auto whole = full.trainer->run();
  ASSERT_EQ(whole.steps.size(), 9u);
  int skipped = 0;
  std::set<float> scales;
  for (const auto& s : whole.steps) {
    skipped += s.skipped;
    scales.insert(s.loss_scale);
  }
  // Both kinds of step happen, and the scale moves, or the comparison would prove little.
  EXPECT_GT(skipped, 0);
  EXPECT_LT(skipped, 9);
  EXPECT_GT(scales.size(), 2u);
  EXPECT_NE(whole.steps.front().loss, whole.steps.back().loss);

  std::vector<ft::train::StepRecord> pieced;
  for (int64_t limit : {2, 4, 0}) {
    TrainerConfig c = config(dir_b);
    c.max_steps_this_run = limit;
    TrainingRun part(train, &valid, c, adamw(), mx::float16);
    part.trainer->resume();
    auto r = part.trainer->run();
    pieced.insert(pieced.end(), r.steps.begin(), r.steps.end());
    if (limit == 0) {
      expect_same_params(full.model.parameters(), part.model.parameters());
      expect_same_params(full.optimizer->state(), part.optimizer->state());
    }
  }
  expect_same_steps(whole.steps, pieced);
  ASSERT_EQ(pieced.size(), whole.steps.size());
  for (size_t i = 0; i < pieced.size(); ++i) {
    EXPECT_EQ(whole.steps[i].loss_scale, pieced[i].loss_scale) << i;
    EXPECT_EQ(whole.steps[i].skipped, pieced[i].skipped) << i;
  }
  auto records = without_timing(read_jsonl(dir_a / "metrics.jsonl"));
  EXPECT_EQ(records, without_timing(read_jsonl(dir_b / "metrics.jsonl")));
  for (size_t i = 0, step = 0; i < records.size(); ++i) {
    if (!records[i].contains("loss_scale")) continue;  // an evaluation
    EXPECT_EQ(records[i]["loss_scale"].get<float>(), whole.steps[step].loss_scale);
    EXPECT_EQ(records[i]["skipped"].get<bool>(), whole.steps[step].skipped);
    ++step;
  }
  // The checkpoint holds f32 masters of the f16 model and the scaler's state.
  auto last = ft::train::latest_checkpoint(dir_a / "checkpoints");
  ASSERT_TRUE(last.has_value());
  auto checkpoint = ft::train::read_checkpoint(*last);
  for (const auto& [name, value] : checkpoint.weights)
    EXPECT_EQ(value.dtype(), mx::float32) << name;
  // Replaying the skips through a LossScaler gives each step's scale and the saved state.
  ft::LossScaler replay(*config(dir_a).loss_scale);
  for (const auto& s : whole.steps) {
    EXPECT_EQ(s.loss_scale, replay.scale()) << s.step;
    replay.update(!s.skipped);
  }
  ASSERT_TRUE(checkpoint.state.loss_scale.has_value());
  EXPECT_EQ(*checkpoint.state.loss_scale, replay.scale());
  EXPECT_EQ(checkpoint.state.loss_scale_good_steps, replay.good_steps());
  fs::remove_all(dir_a);
  fs::remove_all(dir_b);
}

TEST(Trainer, MetricsRecordsHoldTheStepAndEvalFields) {
  auto train = random_samples(8, 3);
  auto valid = random_samples(4, 4);
  fs::path dir = fresh_dir("metrics");
  TrainerConfig c = resume_config(dir);
  c.epochs = 0;
  c.iterations = 2;
  c.grad_accumulation = 1;
  c.eval_every = 2;
  TrainingRun s(train, &valid, c);
  auto r = s.trainer->run();
  auto records = read_jsonl(dir / "metrics.jsonl");
  ASSERT_EQ(records.size(), 3u);
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(records[size_t(i)]["step"], i + 1);
    EXPECT_EQ(records[size_t(i)]["loss"].get<float>(), r.steps[size_t(i)].loss);
    EXPECT_EQ(records[size_t(i)]["learning_rate"].get<float>(), r.steps[size_t(i)].learning_rate);
    EXPECT_EQ(records[size_t(i)]["grad_norm"].get<float>(), r.steps[size_t(i)].grad_norm);
    EXPECT_EQ(records[size_t(i)]["tokens"].get<double>(), r.steps[size_t(i)].tokens);
    EXPECT_GT(records[size_t(i)]["tokens_per_second"].get<double>(), 0);
    EXPECT_GT(records[size_t(i)]["peak_memory"].get<double>(), 0);
    EXPECT_EQ(records[size_t(i)]["loss_scale"].get<float>(), 1.0f);
    EXPECT_EQ(records[size_t(i)]["skipped"].get<bool>(), false);
  }
  ASSERT_EQ(r.evals.size(), 1u);
  EXPECT_EQ(records[2]["step"], 2);
  EXPECT_EQ(records[2]["val_loss"].get<double>(), r.evals[0].loss);
  EXPECT_EQ(records[2]["val_ppl"].get<double>(), r.evals[0].perplexity);
  EXPECT_EQ(records[2]["val_accuracy"].get<double>(), r.evals[0].accuracy);
  fs::remove_all(dir);
}

// The reference reads each validation sample alone (no padding, no batching) and
// computes log-softmax in double on the host.
TEST(Trainer, EvaluationEqualsDirectComputation) {
  auto train = random_samples(4, 5);
  auto valid = random_samples(7, 6);
  TrainerConfig c;
  c.iterations = 1;
  c.eval_batch_size = 3;
  c.progress = false;
  TrainingRun s(train, &valid, c);
  auto got = s.trainer->evaluate();

  double loss = 0, tokens = 0, correct = 0;
  for (size_t i = 0; i < valid.size(); ++i) {
    auto ids = valid.ids(i);
    auto mask = valid.mask(i);
    int n = int(ids.size()) - 1;
    std::vector<int32_t> input(ids.begin(), ids.end() - 1);
    mx::array logits = s.model(mx::array(input.data(), {1, n}, mx::int32));
    mx::eval(logits);
    const float* z = logits.data<float>();
    for (int t = 0; t < n; ++t) {
      if (!mask[size_t(t) + 1]) continue;
      const float* row = z + size_t(t) * 64;
      double top = row[0], sum = 0;
      int best = 0;
      for (int v = 0; v < 64; ++v) {
        if (row[v] > top) top = row[v], best = v;
      }
      for (int v = 0; v < 64; ++v) sum += std::exp(double(row[v]) - top);
      int target = ids[size_t(t) + 1];
      loss += top + std::log(sum) - row[target];
      tokens += 1;
      correct += best == target;
    }
  }
  EXPECT_EQ(got.tokens, tokens);
  EXPECT_NEAR(got.loss, loss / tokens, 1e-5 * loss / tokens);
  EXPECT_NEAR(got.perplexity, std::exp(loss / tokens), 1e-5 * std::exp(loss / tokens));
  EXPECT_DOUBLE_EQ(got.accuracy, correct / tokens);
}

// With a rate of 1e-30 no f32 weight moves, so every evaluation gives the same loss and
// none improves on the first.
TEST(Trainer, EarlyStoppingAfterPatienceEvaluationsWithoutImprovement) {
  auto train = random_samples(8, 7);
  auto valid = random_samples(4, 8);
  fs::path dir = fresh_dir("early");
  TrainerConfig c;
  c.iterations = 20;
  c.batch_size = 2;
  c.eval_every = 2;
  c.patience = 3;
  c.output_dir = dir;
  c.progress = false;
  ft::OptimizerConfig sgd;
  sgd.name = "sgd";
  sgd.learning_rate = 1e-30f;
  TrainingRun s(train, &valid, c, sgd);
  auto r = s.trainer->run();
  EXPECT_EQ(r.reason, StopReason::early_stopped);
  // Evaluations at steps 2 (best), 4, 6, 8 (third without improvement).
  EXPECT_EQ(r.step, 8);
  ASSERT_EQ(r.evals.size(), 4u);
  for (const auto& e : r.evals) EXPECT_EQ(e.loss, r.evals[0].loss);
  auto saved = ft::train::read_checkpoint(ft::train::checkpoint_folder(dir / "checkpoints", 8));
  EXPECT_EQ(saved.state.evals_without_improvement, 3);
  ASSERT_TRUE(saved.state.best_val_loss.has_value());
  EXPECT_EQ(*saved.state.best_val_loss, r.evals[0].loss);

  // Interrupted after step 4 and resumed, the run keeps its best loss and count of
  // evaluations without improvement and stops at the same step.
  fs::path split = fresh_dir("early_split");
  c.output_dir = split;
  c.max_steps_this_run = 4;
  {
    TrainingRun first(train, &valid, c, sgd);
    EXPECT_EQ(first.trainer->run().reason, StopReason::step_limit);
  }
  c.max_steps_this_run = 0;
  TrainingRun second(train, &valid, c, sgd);
  EXPECT_EQ(second.trainer->resume(), 4);
  auto rest = second.trainer->run();
  EXPECT_EQ(rest.reason, StopReason::early_stopped);
  EXPECT_EQ(rest.step, 8);
  fs::remove_all(dir);
  fs::remove_all(split);
}

TEST(Trainer, RejectsInconsistentSettings) {
  auto train = random_samples(4, 12);
  TrainerConfig c;
  c.eval_every = 1;  // no validation set
  EXPECT_THROW(TrainingRun(train, nullptr, c), ft::Error);
  c.eval_every = 0;
  c.grad_accumulation = 0;
  EXPECT_THROW(TrainingRun(train, nullptr, c), ft::Error);
}

// kill -9 between checkpoints: a child process (this binary, running the helper test
// below) trains with a checkpoint every 2 steps and kills itself after step 5; the parent
// resumes from step 4 and must reproduce the uninterrupted run's metrics.
constexpr const char* kKillDirVariable = "FT_TRAINER_KILL_DIR";

TrainerConfig kill_config(const fs::path& dir) {
  TrainerConfig c = resume_config(dir);
  c.save_every = 2;
  return c;
}

TEST(TrainerKillHelper, TrainsAndKillsItselfAfterStep5) {
  const char* dir = std::getenv(kKillDirVariable);
  if (!dir) GTEST_SKIP() << "run by Trainer.KilledRunResumesFromItsLastCheckpoint";
  ft::testing::OnCpu cpu;  // as the run it is compared with
  auto train = random_samples(12, 1);
  auto valid = random_samples(5, 2);
  TrainingRun s(train, &valid, kill_config(dir));
  s.trainer->on_step([](const ft::train::StepRecord& r) {
    if (r.step == 5) ::raise(SIGKILL);
  });
  s.trainer->run();
}

TEST(Trainer, KilledRunResumesFromItsLastCheckpoint) {
  // Bit for bit is a CPU promise: MLX's CUDA kernels may round differently from run to
  // run (atomic accumulations), so on a GPU machine this runs on the CPU too.
  ft::testing::OnCpu cpu;
  auto train = random_samples(12, 1);
  auto valid = random_samples(5, 2);
  fs::path dir_a = fresh_dir("kill_full"), dir_b = fresh_dir("kill_parts");
  {
    TrainingRun full(train, &valid, kill_config(dir_a));
    full.trainer->run();
  }

  std::string filter = "--gtest_filter=TrainerKillHelper.TrainsAndKillsItselfAfterStep5";
  std::string variable = std::string(kKillDirVariable) + "=" + dir_b.string();
  std::vector<char*> env;
  for (char** e = environ; *e; ++e) env.push_back(*e);
  env.push_back(variable.data());
  env.push_back(nullptr);
  std::string self = fs::read_symlink("/proc/self/exe").string();
  char* argv[] = {self.data(), filter.data(), nullptr};
  pid_t child = 0;
  ASSERT_EQ(::posix_spawn(&child, self.c_str(), nullptr, nullptr, argv, env.data()), 0);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status)) << "status " << status;
  EXPECT_EQ(WTERMSIG(status), SIGKILL);
  // Step 5's record reached the metrics file, its checkpoint did not.
  EXPECT_EQ(read_jsonl(dir_b / "metrics.jsonl").back()["step"], 5);
  EXPECT_EQ(ft::train::latest_checkpoint(dir_b / "checkpoints"),
            dir_b / "checkpoints" / "step-000004");

  TrainingRun resumed(train, &valid, kill_config(dir_b));
  EXPECT_EQ(resumed.trainer->resume(), 4);
  resumed.trainer->run();
  EXPECT_EQ(without_timing(read_jsonl(dir_a / "metrics.jsonl")),
            without_timing(read_jsonl(dir_b / "metrics.jsonl")));
  fs::remove_all(dir_a);
  fs::remove_all(dir_b);
}

}  // namespace
