// Every family through the commands a user runs: ft init --arch writes a folder that
// loads, ft train fine-tunes it with LoRA on the family's default targets, ft fuse
// merges the adapter into a folder that computes what the adapted model computes, and
// ft bench --model times it.
#include <cmath>

#include <nlohmann/json.hpp>

#include "ft/core/param_map.h"
#include "ft/models/registry.h"
#include "tests/cli_train/cli_train_util.h"

namespace {

using namespace ft::testing::cli_train;

class Family : public ::testing::TestWithParam<std::string> {};

TEST_P(Family, InitTrainFuseAndBench) {
  const std::string arch = GetParam();
  fs::path model = temp("family_" + arch);
  fs::path run_dir = temp("family_run_" + arch), fused = temp("family_fused_" + arch);
  Result r = run("init --arch " + arch + " --out " + model.string());
  ASSERT_EQ(r.status, 0) << r.out;
  fs::path data = small_data(32);
  r = run("train " + model.string() + " " + data.string() +
          " --iterations 4 --batch-size 4 --learning-rate 1e-2 --output-dir " + run_dir.string());
  ASSERT_EQ(r.status, 0) << r.out;
  const std::vector<std::string> targets =
      ft::models::family_of(
          nlohmann::json::parse(std::ifstream(model / "config.json"))["model_type"]
              .get<std::string>())
          .default_lora_targets;
  auto adapter_config =
      nlohmann::json::parse(std::ifstream(run_dir / "adapter" / "adapter_config.json"));
  std::vector<std::string> saved = adapter_config["target_modules"];
  std::sort(saved.begin(), saved.end());
  std::vector<std::string> expected = targets;
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(saved, expected) << arch;
  // PEFT's flag for Conv1D bases (weights stored (in, out)), which only GPT-2 has.
  EXPECT_EQ(adapter_config["fan_in_fan_out"].get<bool>(), arch == "gpt2") << arch;

  r = run("fuse " + model.string() + " --adapter " + (run_dir / "adapter").string() + " --out " +
          fused.string());
  ASSERT_EQ(r.status, 0) << r.out;
  double base = eval_loss(model, data);
  double adapted = eval_loss(model, data, "--adapter " + (run_dir / "adapter").string());
  double merged = eval_loss(fused, data);
  EXPECT_GT(std::abs(adapted - base), 1e-3) << arch << ": the adapter changed nothing";
  EXPECT_NEAR(merged, adapted, 1e-4 * adapted) << arch;

  r = run("bench --model " + model.string() + " --steps 1 --warmup 1 --seq-length 32 --json");
  ASSERT_EQ(r.status, 0) << r.out;
  auto bench = nlohmann::json::parse(r.out);
  EXPECT_GT(bench["tokens_per_s"].get<double>(), 0) << arch;
  EXPECT_GT(bench["flops_per_token"].get<double>(), 0) << arch;
}

// DoRA, QLoRA (4 bits in groups of 32: every layer of the tiny models, GPT-2's learned
// positions included) and full fine-tuning run on every family and write their outputs.
TEST_P(Family, DoraQloraAndFullFineTuning) {
  const std::string arch = GetParam();
  fs::path model = temp("methods_" + arch);
  ASSERT_EQ(run("init --arch " + arch + " --out " + model.string()).status, 0);
  fs::path data = small_data(16);
  const std::vector<std::pair<std::string, std::string>> methods = {
      {"--method dora", "adapter"},
      {"--quantize-bits 4 --quantize-group-size 32", "adapter"},
      {"--method full", "model"}};
  for (const auto& [options, output] : methods) {
    fs::path out = temp("methods_run_" + arch);
    Result r = run("train " + model.string() + " " + data.string() +
                   " --iterations 2 --batch-size 4 " + options + " --output-dir " + out.string());
    EXPECT_EQ(r.status, 0) << arch << " " << options << ": " << r.out;
    EXPECT_TRUE(fs::exists(out / output)) << arch << " " << options;
    auto losses = metric_losses(out / "metrics.jsonl");
    ASSERT_EQ(losses.size(), 2u) << arch << " " << options;
    EXPECT_TRUE(std::isfinite(losses[0]) && std::isfinite(losses[1])) << arch << " " << options;
  }
}

INSTANTIATE_TEST_SUITE_P(Families, Family, ::testing::ValuesIn(ft::models::known_model_types()));

}  // namespace

namespace {

// --router-aux-loss adds Mixtral's load-balancing loss (the first step's loss grows by the
// weight times the aux loss, about 2 for a balanced router of top-2), and is refused for a
// model without experts, by ft train and ft validate alike.
TEST(RouterAuxLoss, WeighsTheLoadBalancingLossAndNeedsExperts) {
  fs::path model = temp("aux_mixtral");
  ASSERT_EQ(run("init --arch mixtral --out " + model.string()).status, 0);
  fs::path data = small_data(8);
  auto first_loss = [&](const std::string& extra) {
    fs::path out = temp("aux_run");
    Result r = run("train " + model.string() + " " + data.string() +
                   " --iterations 1 --batch-size 4 --output-dir " + out.string() + extra);
    EXPECT_EQ(r.status, 0) << r.out;
    auto losses = metric_losses(out / "metrics.jsonl");
    return losses.empty() ? 0.0f : losses[0];
  };
  float plain = first_loss(""), weighted = first_loss(" --router-aux-loss 0.5");
  EXPECT_GT(weighted - plain, 0.5f * 1.5f);
  EXPECT_LT(weighted - plain, 0.5f * 4.0f);

  for (const char* command : {"train", "validate"}) {
    Result r = run(std::string(command) + " " + tiny_model().string() + " " + data.string() +
                   " --router-aux-loss 0.5 --output-dir " + temp("aux_llama").string());
    EXPECT_EQ(r.status, 1) << command;
    EXPECT_TRUE(one_error_line(r.out)) << r.out;
    EXPECT_NE(r.out.find("has no router"), std::string::npos) << r.out;
  }
}

}  // namespace

namespace {

// A multimodal gemma3 folder (Gemma3ForConditionalGeneration) trains its text model: the
// adapter names the modules as PEFT does on that class (model.language_model.layers.N),
// ft reads it back, and ft fuse writes the text model alone, with its own config.json
// (gemma3_text), which computes what the adapted model computes.
TEST(MultimodalGemma3, TrainsSavesAndFusesTheTextModel) {
  // ft init's gemma3_text model (and its tokenizer) inside a multimodal folder, as
  // transformers saves Gemma3ForConditionalGeneration: text_config, language_model.model.*.
  fs::path text = temp("gemma3_text_part"), model = temp("gemma3_multimodal");
  ASSERT_EQ(run("init --arch gemma3_text --out " + text.string()).status, 0);
  fs::copy(text, model, fs::copy_options::recursive);
  auto text_config = nlohmann::json::parse(std::ifstream(text / "config.json"));
  nlohmann::json outer = {{"model_type", "gemma3"},
                          {"architectures", {"Gemma3ForConditionalGeneration"}},
                          {"text_config", text_config},
                          {"vision_config", {{"model_type", "siglip_vision_model"}}}};
  std::ofstream(model / "config.json") << outer.dump(2);
  ft::ParamMap weights;
  for (const auto& [name, value] :
       ft::ParamMap::load_safetensors((text / "model.safetensors").string()))
    weights.set("language_model." + name, value);
  weights.save_safetensors((model / "model.safetensors").string());
  fs::path data = small_data(16);
  fs::path run_dir = temp("gemma3_run"), fused = temp("gemma3_fused");
  Result r =
      run("train " + model.string() + " " + data.string() +
          " --iterations 3 --batch-size 4 --learning-rate 1e-2 --output-dir " + run_dir.string());
  ASSERT_EQ(r.status, 0) << r.out;
  const fs::path adapter = run_dir / "adapter";
  auto config = nlohmann::json::parse(std::ifstream(adapter / "adapter_config.json"));
  EXPECT_TRUE(config["target_modules"].is_string()) << config.dump();  // the exact regex
  EXPECT_NE(config["target_modules"].get<std::string>().find("model\\.language_model\\.layers"),
            std::string::npos);
  EXPECT_GT(
      std::abs(eval_loss(model, data, "--adapter " + adapter.string()) - eval_loss(model, data)),
      1e-3);

  r = run("fuse " + model.string() + " --adapter " + adapter.string() + " --out " + fused.string());
  ASSERT_EQ(r.status, 0) << r.out;
  auto fused_config = nlohmann::json::parse(std::ifstream(fused / "config.json"));
  EXPECT_EQ(fused_config["model_type"], "gemma3_text");
  EXPECT_EQ(fused_config["architectures"], nlohmann::json::array({"Gemma3ForCausalLM"}));
  EXPECT_FALSE(fused_config.contains("vision_config"));
  double adapted = eval_loss(model, data, "--adapter " + adapter.string());
  EXPECT_NEAR(eval_loss(fused, data), adapted, 1e-4 * adapted);
}

}  // namespace
