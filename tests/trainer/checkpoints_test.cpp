// Checkpoints as the trainer writes them: which steps, what they hold, pruning, files a
// caller adds, incomplete folders, and a checkpoint of other settings refused by name.
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

TEST(Trainer, SaveEveryWritesTheExpectedCheckpoints) {
  auto train = random_samples(10, 9);
  fs::path dir = fresh_dir("save");
  TrainerConfig c;
  c.iterations = 5;
  c.batch_size = 2;
  c.save_every = 2;
  c.output_dir = dir;
  c.progress = false;
  TrainingRun s(train, nullptr, c);
  auto r = s.trainer->run();
  EXPECT_EQ(r.reason, StopReason::finished);

  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir / "checkpoints"))
    names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names,
            (std::vector<std::string>{"latest", "step-000002", "step-000004", "step-000005"}));
  std::ifstream latest(dir / "checkpoints" / "latest");
  std::string pointer;
  latest >> pointer;
  EXPECT_EQ(pointer, "step-000005");
  ASSERT_TRUE(r.last_checkpoint.has_value());
  EXPECT_EQ(*r.last_checkpoint, dir / "checkpoints" / "step-000005");

  // 5 batches an epoch: after 4 steps the next batch is (0, 4); after 5, (1, 0).
  auto four = ft::train::read_checkpoint(dir / "checkpoints" / "step-000004");
  EXPECT_EQ(four.state.step, 4);
  EXPECT_EQ(four.state.position, (ft::data::Position{0, 4}));
  auto five = ft::train::read_checkpoint(dir / "checkpoints" / "step-000005");
  EXPECT_EQ(five.state.position, (ft::data::Position{1, 0}));
  EXPECT_EQ(five.state.config_hash, s.trainer->config_hash());
  expect_same_params(five.weights, s.model.trainable_parameters());
  expect_same_params(five.optimizer, s.optimizer->state());

  // Resuming a finished run trains nothing and writes no checkpoint.
  TrainingRun again(train, nullptr, c);
  EXPECT_EQ(again.trainer->resume(), 5);
  auto none = again.trainer->run();
  EXPECT_TRUE(none.steps.empty());
  EXPECT_EQ(none.reason, StopReason::finished);
  EXPECT_FALSE(none.last_checkpoint.has_value());
  fs::remove_all(dir);
}

TEST(Trainer, KeepCheckpointsPrunesAllButTheLastAndAddsTheCallersFiles) {
  auto train = random_samples(10, 9);
  fs::path dir = fresh_dir("keep");
  TrainerConfig c;
  c.iterations = 7;
  c.batch_size = 2;
  c.save_every = 2;
  c.keep_checkpoints = 2;
  c.output_dir = dir;
  c.progress = false;
  int calls = 0;
  c.checkpoint_files = [&](const fs::path& folder) {
    ++calls;
    // Written before the folder is complete, into the folder that becomes step-N.
    EXPECT_FALSE(fs::exists(folder / "complete"));
    std::ofstream(folder / "extra.txt") << "x";
  };
  fs::create_directories(dir / "checkpoints" / ".tmp-step-000009");  // a crash's leftover
  TrainingRun s(train, nullptr, c);
  s.trainer->run();
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir / "checkpoints"))
    names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"latest", "step-000006", "step-000007"}));
  EXPECT_EQ(calls, 4);  // steps 2, 4, 6 and 7
  EXPECT_TRUE(fs::exists(dir / "checkpoints" / "step-000007" / "extra.txt"));
}

TEST(Trainer, IncompleteAndTemporaryCheckpointsAreIgnored) {
  auto train = random_samples(10, 10);
  fs::path dir = fresh_dir("incomplete");
  TrainerConfig c;
  c.iterations = 4;
  c.batch_size = 2;
  c.save_every = 2;
  c.output_dir = dir;
  c.progress = false;
  {
    TrainingRun s(train, nullptr, c);
    s.trainer->run();
  }
  fs::path root = dir / "checkpoints";
  // A later step whose write stopped before the marker, and a finished temporary folder
  // that was never renamed.
  fs::copy(root / "step-000004", root / "step-000006");
  fs::remove(root / "step-000006" / "complete");
  fs::copy(root / "step-000004", root / ".tmp-step-000008");
  EXPECT_EQ(ft::train::latest_checkpoint(root), root / "step-000004");
  EXPECT_THROW(ft::train::read_checkpoint(root / "step-000006"), ft::Error);

  fs::remove(root / "step-000004" / "complete");
  EXPECT_EQ(ft::train::latest_checkpoint(root), root / "step-000002");
  TrainingRun resumed(train, nullptr, c);
  EXPECT_EQ(resumed.trainer->resume(), 2);
  auto r = resumed.trainer->run();
  EXPECT_EQ(r.steps.size(), 2u);
  EXPECT_EQ(r.steps.front().step, 3);
  // The final save replaced the folder that had lost its marker.
  EXPECT_EQ(ft::train::latest_checkpoint(root), root / "step-000004");
  EXPECT_EQ(ft::train::read_checkpoint(root / "step-000004").state.step, 4);
  EXPECT_FALSE(fs::exists(root / ".tmp-step-000004"));
  fs::remove_all(dir);
}

TEST(Trainer, ResumeRefusesACheckpointOfOtherSettings) {
  auto train = random_samples(6, 11);
  fs::path dir = fresh_dir("hash");
  TrainerConfig c;
  c.iterations = 2;
  c.batch_size = 2;
  c.output_dir = dir;
  c.progress = false;
  {
    TrainingRun s(train, nullptr, c);
    s.trainer->run();
  }
  c.grad_accumulation = 2;
  c.seed = 5;
  TrainingRun other(train, nullptr, c);
  // The error names what changed.
  try {
    other.trainer->resume();
    ADD_FAILURE() << "no error";
  } catch (const ft::Error& e) {
    EXPECT_NE(e.fact().find("written by a run with other settings (accumulation 1 -> 2, "
                            "seed 0 -> 5)"),
              std::string::npos)
        << e.what();
  }
  fs::remove_all(dir);
}

}  // namespace
