// ft train --dtype (mixed precision, loss scaling) and --teacher (distillation) as a
// script sees them.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>
#include <vector>

#include <mlx/ops.h>

#include "ft/io/model_folder.h"
#include "tests/cli_train/cli_train_util.h"

namespace {

using namespace ft::testing::cli_train;
namespace mx = mlx::core;

const fs::path& student() {
  return tiny_model();
}

const fs::path& teacher() {
  static fs::path dir = init_model("teacher", 2);
  return dir;
}

float mean_of_last(const std::vector<float>& v, size_t n) {
  float sum = 0;
  for (size_t i = v.size() - n; i < v.size(); ++i) sum += v[i];
  return sum / float(n);
}

}  // namespace

TEST(CliPrecision, Bfloat16LoraLowersTheLossAndKeepsF32Adapters) {
  fs::path data = small_data(64);
  fs::path out = temp("bf16");
  double before = eval_loss(student(), data);
  Result r = run("train " + student().string() + " " + data.string() +
                 " --dtype bfloat16 --iterations 25 --lr 1e-2 --batch-size 8 --lora-rank 4"
                 " --output-dir " +
                 out.string());
  ASSERT_EQ(r.status, 0) << r.out;
  double after = eval_loss(student(), data, "--adapter " + (out / "adapter").string());
  EXPECT_LT(after, before - 0.5) << r.out;
  auto adapter = ft::io::load_weights(out / "adapter/adapter_model.safetensors");
  ASSERT_FALSE(adapter.empty());
  for (const auto& [name, value] : adapter) EXPECT_EQ(value.dtype(), mx::float32) << name;
  for (const auto& record : step_records(out / "metrics.jsonl")) {
    EXPECT_EQ(record["loss_scale"].get<float>(), 1.0f);  // bfloat16 needs no scaling
    EXPECT_FALSE(record["skipped"].get<bool>());
  }
}

// Full fine-tuning in float16: the loss is scaled from 2^15, the run lowers the loss, and
// an interrupted run resumes with the same losses and scales bit for bit.
TEST(CliPrecision, Float16FullFineTuningScalesTheLossAndResumesExactly) {
  fs::path data = small_data(48);
  std::string common = "train " + student().string() + " " + data.string() +
                       " --dtype float16 --method full --iterations 12 --batch-size 4"
                       " --lr 2e-3 --loss-scale-interval 3 --seed 5";
  fs::path straight = temp("f16_straight");
  Result a = run_on_cpu(common + " --output-dir " + straight.string());
  ASSERT_EQ(a.status, 0) << a.out;
  auto records = step_records(straight / "metrics.jsonl");
  ASSERT_EQ(records.size(), 12u);
  EXPECT_EQ(records[0]["loss_scale"].get<float>(), 32768.0f);
  auto l = metric_losses(straight / "metrics.jsonl");
  EXPECT_LT(mean_of_last(l, 3), l.front() - 0.3f) << a.out;
  // The saved model is float16, like the model it was trained as.
  auto weights = ft::io::load_weights(straight / "model");
  EXPECT_EQ(weights.at("model.embed_tokens.weight").dtype(), mx::float16);

  fs::path resumed = temp("f16_resumed");
  Result first = run_on_cpu(common + " --stop-after 5 --output-dir " + resumed.string());
  ASSERT_EQ(first.status, 0) << first.out;
  Result second = run_on_cpu(common + " --output-dir " + resumed.string());
  ASSERT_EQ(second.status, 0) << second.out;
  EXPECT_NE(second.out.find("resumed from step 5"), std::string::npos) << second.out;
  auto again = step_records(resumed / "metrics.jsonl");
  ASSERT_EQ(again.size(), records.size());
  for (size_t i = 0; i < records.size(); ++i) {
    float x = again[i]["loss"].get<float>(), y = records[i]["loss"].get<float>();
    if (ft::testing::on_gpu()) {
      // With MLX's CUDA build the CPU runs of float16 full fine-tuning differ in the last
      // bits from run to run (two uninterrupted runs do too), so the exact check is the
      // CPU build's.
      EXPECT_NEAR(x, y, 1e-5f * std::abs(y)) << i;
    } else {
      EXPECT_EQ(x, y) << i;
    }
    EXPECT_EQ(again[i]["loss_scale"], records[i]["loss_scale"]) << i;
    EXPECT_EQ(again[i]["skipped"], records[i]["skipped"]) << i;
  }
}

// With --distill-weight 1 the loss is T^2 KL(teacher || student) per trained token: the
// student moves towards the teacher, padded and packed alike.
TEST(CliDistill, TrainingTowardsATeacherLowersTheKl) {
  fs::path data = small_data(64);
  for (std::string pack : {"", " --pack"}) {
    fs::path out = temp("distill" + std::to_string(pack.size()));
    Result r = run("train " + student().string() + " " + data.string() + " --teacher " +
                   teacher().string() +
                   " --distill-weight 1 --distill-temperature 2 --iterations 20 --lr 1e-2"
                   " --batch-size 8 --lora-rank 8 --output-dir " +
                   out.string() + pack);
    ASSERT_EQ(r.status, 0) << r.out;
    EXPECT_NE(r.out.find("teacher: " + teacher().string()), std::string::npos) << r.out;
    auto kl = metric_losses(out / "metrics.jsonl");
    ASSERT_EQ(kl.size(), 20u);
    EXPECT_GT(kl.front(), 0.0f);
    EXPECT_LT(mean_of_last(kl, 3), 0.7f * kl.front()) << r.out;
  }
}

TEST(CliDistill, ATeacherWithAnotherVocabIsOneErrorLine) {
  // The student's folder with a larger vocab.
  fs::path other = temp("other_vocab");
  fs::copy(student(), other, fs::copy_options::recursive);
  auto config = nlohmann::json::parse(std::ifstream(other / "config.json"));
  config["vocab_size"] = 300;
  std::ofstream(other / "config.json") << config.dump();
  auto weights = ft::io::load_weights(other);
  weights.set("model.embed_tokens.weight", mx::zeros({300, 64}));
  weights.save_safetensors((other / "model.safetensors").string());

  fs::path data = small_data(8);
  for (std::string command : {"train", "validate"}) {
    Result r = run(command + " " + student().string() + " " + data.string() + " --teacher " +
                   other.string() + " --iterations 1 --output-dir " + temp("vocab").string());
    EXPECT_EQ(r.status, 1) << command;
    EXPECT_TRUE(one_error_line(r.out)) << r.out;
    EXPECT_NE(r.out.find("the teacher has 300 vocab entries but the student 259"),
              std::string::npos)
        << r.out;
  }
}
