// What a run leaves behind: the best evaluated step as the output (--save-best), pruned
// checkpoints (--keep-checkpoints) that each load as the adapter or model of their step,
// configs that state their dtype, and settings that cannot take effect refused.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include <mlx/ops.h>

#include "ft/core/param_map.h"
#include "tests/cli_train/cli_train_util.h"

using namespace ft::testing::cli_train;

namespace {

// Every tensor of two safetensors files is equal.
void expect_same_weights(const fs::path& a, const fs::path& b) {
  const ft::ParamMap x = ft::ParamMap::load_safetensors(a.string());
  const ft::ParamMap y = ft::ParamMap::load_safetensors(b.string());
  ASSERT_EQ(x.size(), y.size());
  for (const auto& [name, value] : x)
    EXPECT_TRUE(mlx::core::array_equal(value, y.at(name)).item<bool>()) << name;
}

std::vector<fs::path> step_folders(const fs::path& root) {
  std::vector<fs::path> out;
  for (const auto& e : fs::directory_iterator(root))
    if (e.is_directory() && e.path().filename().string().starts_with("step-"))
      out.push_back(e.path().filename());
  std::sort(out.begin(), out.end());
  return out;
}

TEST(CliOutputs, TheOutputIsTheBestEvaluatedStep) {
  const fs::path data = small_data(48);
  const fs::path out = temp("best");
  // A learning rate this high overshoots: the validation loss rises again after a step or two.
  const std::string run_args =
      "train start " + tiny_model().string() + " " + data.string() +
      " --iterations 8 --eval-every 1 --valid-fraction 0.25 "
      "--learning-rate 100 --schedule constant --batch-size 4 --output-dir ";
  Result r = run(run_args + out.string());
  ASSERT_EQ(r.status, 0) << r.out;
  int64_t best_step = 0;
  double best_loss = 1e30;
  for (const auto& rec : [&] {
         std::vector<nlohmann::json> evals;
         std::ifstream in(out / "metrics.jsonl");
         std::string line;
         while (std::getline(in, line))
           if (line.find("val_loss") != std::string::npos)
             evals.push_back(nlohmann::json::parse(line));
         return evals;
       }()) {
    if (rec["val_loss"].get<double>() < best_loss) {
      best_loss = rec["val_loss"];
      best_step = rec["step"];
    }
  }
  ASSERT_GT(best_step, 0);
  ASSERT_LT(best_step, 8)
      << "the run did not overshoot; the test needs a best step before the last";
  EXPECT_NE(r.out.find("best: step " + std::to_string(best_step)), std::string::npos) << r.out;
  const std::vector<fs::path> best = step_folders(out / "best");
  ASSERT_EQ(best.size(), 1u);
  EXPECT_EQ(best[0], fs::path(std::string("step-00000") + std::to_string(best_step)));
  expect_same_weights(out / "adapter" / "adapter_model.safetensors",
                      out / "best" / best[0] / "adapter" / "adapter_model.safetensors");

  // --no-save-best: the last step's weights, as its checkpoint holds them.
  const fs::path last = temp("last");
  Result l = run(run_args + last.string() + " --no-save-best");
  ASSERT_EQ(l.status, 0) << l.out;
  EXPECT_FALSE(fs::exists(last / "best"));
  expect_same_weights(
      last / "adapter" / "adapter_model.safetensors",
      last / "checkpoints" / "step-000008" / "adapter" / "adapter_model.safetensors");
}

TEST(CliOutputs, CheckpointsArePrunedAndEachLoadsAsItsStepsAdapter) {
  const fs::path data = small_data(32);
  const fs::path out = temp("pruned");
  Result r = run("train start " + tiny_model().string() + " " + data.string() +
                 " --iterations 6 --save-every 2 --keep-checkpoints 2 --batch-size 4 "
                 "--learning-rate 1e-2 --output-dir " +
                 out.string());
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_EQ(step_folders(out / "checkpoints"),
            (std::vector<fs::path>{"step-000004", "step-000006"}));
  // A checkpoint folder is an --adapter as it is.
  const double final_loss =
      eval_loss(tiny_model(), data, "--adapter " + (out / "adapter").string());
  EXPECT_EQ(
      eval_loss(tiny_model(), data, "--adapter " + (out / "checkpoints" / "step-000006").string()),
      final_loss);
  EXPECT_NE(
      eval_loss(tiny_model(), data, "--adapter " + (out / "checkpoints" / "step-000004").string()),
      final_loss);
}

TEST(CliOutputs, FullFineTuningCheckpointsAreModelFoldersStatingTheirDtype) {
  const fs::path data = small_data(16);
  const fs::path out = temp("full_bf16");
  Result r = run("train start " + tiny_model().string() + " " + data.string() +
                 " --method full --dtype bfloat16 --iterations 2 --batch-size 4 --output-dir " +
                 out.string());
  ASSERT_EQ(r.status, 0) << r.out;
  auto dtype_of = [](const fs::path& folder) {
    std::ifstream in(folder / "config.json");
    const nlohmann::json c = nlohmann::json::parse(in);
    return c.value("torch_dtype", c.value("dtype", std::string("none")));
  };
  EXPECT_EQ(dtype_of(out / "model"), "bfloat16");
  // The checkpoint keeps the float32 masters, and says so.
  const fs::path checkpoint = out / "checkpoints" / "step-000002";
  EXPECT_EQ(dtype_of(checkpoint), "float32");
  EXPECT_TRUE(fs::exists(checkpoint / "tokenizer.json"));
  EXPECT_NEAR(eval_loss(checkpoint, data), eval_loss(out / "model", data), 2e-2);
}

TEST(CliOutputs, SettingsThatCannotTakeEffectAreRefused) {
  const fs::path data = small_data(8);
  Result eval =
      run("train validate " + tiny_model().string() + " " + data.string() + " --eval-every 5");
  EXPECT_EQ(eval.status, 1);
  EXPECT_TRUE(one_error_line(eval.out)) << eval.out;
  EXPECT_NE(eval.out.find("--eval-every 5 needs a validation split"), std::string::npos)
      << eval.out;
  Result patience = run("train validate " + tiny_model().string() + " " + data.string() +
                        " --patience 2 --valid-fraction 0.25");
  EXPECT_EQ(patience.status, 1);
  EXPECT_NE(patience.out.find("give --eval-every N too"), std::string::npos) << patience.out;
}

}  // namespace

namespace {

TEST(CliOutputs, AChangedSettingOnAnExistingRunIsNamedAndOverwriteStartsAgain) {
  const fs::path data = small_data(16);
  const fs::path out = temp("changed");
  const std::string base = "train start " + tiny_model().string() + " " + data.string() +
                           " --iterations 4 --batch-size 4 --output-dir " + out.string();
  Result first = run(base + " --stop-after 2");
  ASSERT_EQ(first.status, 0) << first.out;
  Result changed = run(base + " --lora-rank 4 --learning-rate 1e-3");
  EXPECT_EQ(changed.status, 1);
  EXPECT_TRUE(one_error_line(changed.out)) << changed.out;
  EXPECT_NE(changed.out.find("holds checkpoints of a run with other settings (learning_rate "),
            std::string::npos)
      << changed.out;
  EXPECT_NE(changed.out.find("lora_rank 8 -> 4"), std::string::npos) << changed.out;
  EXPECT_NE(changed.out.find("--overwrite"), std::string::npos) << changed.out;
  // The same settings resume; --overwrite starts again from step 1.
  Result resumed = run(base);
  ASSERT_EQ(resumed.status, 0) << resumed.out;
  EXPECT_NE(resumed.out.find("resumed from step 2"), std::string::npos) << resumed.out;
  Result again = run(base + " --lora-rank 4 --overwrite");
  ASSERT_EQ(again.status, 0) << again.out;
  EXPECT_EQ(again.out.find("resumed"), std::string::npos) << again.out;
  EXPECT_EQ(metric_losses(out / "metrics.jsonl").size(), 4u);
}

}  // namespace
