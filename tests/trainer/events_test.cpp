// The trainer's events: their order, what they carry, and a failed run reported to its
// sinks (the sinks themselves are in event_sinks_test.cpp).
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "ft/core/error.h"
#include "ft/train/checkpoint.h"
#include "ft/train/trainer.h"
#include "tests/trainer/trainer_util.h"

using ft::train::StopReason;
using namespace ft::testing::trainer;

namespace {

// Keeps every event it is sent; throws on the step `fail_at` when set.
struct RecordingSink : ft::train::EventSink {
  std::vector<ft::train::TrainEvent> events;
  int64_t fail_at = 0;
  void on_event(const ft::train::TrainEvent& e) override {
    events.push_back(e);
    if (fail_at > 0 && e.kind == ft::train::TrainEvent::Kind::step && e.record.step == fail_at)
      throw ft::Error("sink", "stop here");
  }
  std::string kinds() const {
    using K = ft::train::TrainEvent::Kind;
    std::string out;
    for (const auto& e : events) {
      const char* name = e.kind == K::started      ? "started"
                         : e.kind == K::step       ? "step"
                         : e.kind == K::evaluation ? "eval"
                         : e.kind == K::best       ? "best"
                         : e.kind == K::checkpoint ? "checkpoint"
                         : e.kind == K::finished   ? "finished"
                                                   : "failed";
      if (!out.empty()) out += ' ';
      out += name;
    }
    return out;
  }
};

TEST(Trainer, EventsComeInOrderToEverySink) {
  auto train = random_samples(8, 3);
  auto valid = random_samples(4, 4);
  fs::path dir = fresh_dir("events");
  TrainerConfig c;
  c.iterations = 4;
  c.batch_size = 2;
  c.eval_every = 2;
  c.save_every = 4;
  c.output_dir = dir;
  c.metrics_path = dir / "metrics.jsonl";
  c.progress = false;
  c.run_config = {{"lora_rank", 8}};
  TrainingRun s(train, &valid, c);
  auto a = std::make_shared<RecordingSink>(), b = std::make_shared<RecordingSink>();
  s.trainer->add_sink(a);
  s.trainer->add_sink(b);
  auto r = s.trainer->run();
  // The second evaluation is a new best only if its loss is lower.
  const bool second_best = r.evals[1].loss < r.evals[0].loss;
  EXPECT_EQ(a->kinds(), std::string("started step step eval best step step eval") +
                            (second_best ? " best" : "") + " checkpoint finished");
  EXPECT_EQ(a->kinds(), b->kinds());
  EXPECT_EQ(a->events[0].config, c.run_config);
  EXPECT_EQ(a->events[0].total_steps, 4);
  const auto& last_step = a->events[6];
  EXPECT_EQ(last_step.record.step, 4);
  EXPECT_EQ(last_step.record.loss, r.steps.back().loss);
  ASSERT_TRUE(last_step.eta_seconds.has_value());
  EXPECT_EQ(*last_step.eta_seconds, 0.0);
  EXPECT_GT(last_step.elapsed_seconds, 0.0);
  EXPECT_GT(last_step.peak_memory, 0u);
  EXPECT_EQ(a->events[a->events.size() - 2].folder, dir / "checkpoints" / "step-000004");
  // 8 samples in batches of 2: each step is a quarter of an epoch.
  std::vector<double> epochs;
  for (const auto& e : a->events)
    if (e.kind == ft::train::TrainEvent::Kind::step) epochs.push_back(e.epoch);
  EXPECT_EQ(epochs, (std::vector<double>{0.25, 0.5, 0.75, 1.0}));
  // metrics.jsonl is a sink as well: 4 steps and 2 evaluations.
  EXPECT_EQ(read_jsonl(c.metrics_path).size(), 6u);
}

TEST(Trainer, AFailedRunSaysSoToItsSinksAndRethrows) {
  auto train = random_samples(8, 5);
  TrainerConfig c;
  c.iterations = 4;
  c.batch_size = 2;
  c.progress = false;
  TrainingRun s(train, nullptr, c);
  auto failing = std::make_shared<RecordingSink>(), watching = std::make_shared<RecordingSink>();
  failing->fail_at = 2;
  s.trainer->add_sink(failing);
  s.trainer->add_sink(watching);
  EXPECT_THROW(s.trainer->run(), ft::Error);
  EXPECT_EQ(watching->kinds(), "started step failed");  // the sink after the failing one
  EXPECT_EQ(watching->events.back().error, "[sink] stop here");
}

}  // namespace
