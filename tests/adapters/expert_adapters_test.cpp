// Adapters on Mixtral's stacked expert parameters in PEFT 0.21's target_parameters layout:
// the tensor names PEFT saved for the fixture (tests/golden/make_family_fixtures.py), the
// config, a save/load round trip and the merged model, each against PEFT's logits.
#include <gtest/gtest.h>

#include <unistd.h>  // defines: getpid

#include <filesystem>
#include <fstream>
#include <string>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include <mlx/ops.h>

#include "ft/io/adapters.h"
#include "ft/models/fuse.h"
#include "ft/models/registry.h"
#include "ft/nn/lora.h"
#include "tests/test_util.h"

namespace ft {
namespace {

namespace fs = std::filesystem;
const fs::path kModels = fs::path(FT_TEST_DATA) / "models";

float relative_error(const mx::array& got, const mx::array& want) {
  auto diff = mx::max(mx::abs(mx::subtract(got, want)));
  return mx::divide(diff, mx::max(mx::abs(want))).item<float>();
}

fs::path temp_dir(const std::string& name) {
  fs::path dir = fs::path(::testing::TempDir()) /
                 ("ft_expert_adapters_" + std::to_string(getpid()) + "_" + name);
  fs::remove_all(dir);
  return dir;
}

struct Fixture {
  ParamMap expected;
  std::unordered_map<std::string, std::string> metadata;
  ParamMap adapters;  // ft's names
};

Fixture mixtral_fixture() {
  Fixture f;
  f.expected =
      ParamMap::load_safetensors((kModels / "mixtral_expected.safetensors").string(), &f.metadata);
  for (const auto& [key, value] : f.expected)
    if (key.starts_with("lora.")) f.adapters.set(key.substr(5), value);
  return f;
}

nn::LoraConfig fixture_config() {
  nn::LoraConfig c;
  c.rank = 4;
  c.alpha = 8.0f;
  c.target_modules = {"q_proj", "v_proj", "gate_up_proj", "down_proj"};
  return c;
}

// The fixture's model with PEFT's adapters in place.
std::unique_ptr<models::CausalLM> adapted_mixtral(const Fixture& f, const nn::LoraConfig& c) {
  auto model = models::load_model(kModels / "mixtral", mx::float32);
  model->eval();
  nn::apply_lora(*model, c);
  model->update(f.adapters);
  return model;
}

TEST(ExpertAdapters, PeftLayoutRoundTripsWithPeftsNamesAndLogits) {
  Fixture f = mixtral_fixture();
  auto model = adapted_mixtral(f, fixture_config());
  mx::array ids = f.expected.at("ids");
  ASSERT_LT(relative_error((*model)(ids), f.expected.at("lora_logits")), 1e-4f);

  fs::path out = temp_dir("peft");
  io::save_peft_adapter(*model, fixture_config(), "mixtral", out);
  // The tensors carry the names PEFT itself saved (the fixture's peft_names).
  ParamMap saved = ParamMap::load_safetensors((out / "adapter_model.safetensors").string());
  auto peft_names = nlohmann::json::parse(f.metadata.at("peft_names"));
  ASSERT_EQ(saved.size(), peft_names.size());
  for (const auto& [ours, theirs] : peft_names.items()) {
    const mx::array* tensor = saved.find(theirs.get<std::string>());
    ASSERT_NE(tensor, nullptr) << theirs;
    EXPECT_TRUE(mx::array_equal(*tensor, f.adapters.at(ours.substr(5))).item<bool>()) << ours;
  }
  std::ifstream config_file(out / "adapter_config.json");
  auto config = nlohmann::json::parse(config_file);
  EXPECT_EQ(config["target_modules"], nlohmann::json({"q_proj", "v_proj"}));
  EXPECT_EQ(config["target_parameters"],
            nlohmann::json({"mlp.experts.gate_up_proj", "mlp.experts.down_proj"}));
  EXPECT_EQ(config["r"], 4);

  // Read back without a model: the listed order resolves the nesting.
  io::Adapter read = io::load_adapter(out);
  EXPECT_EQ(read.stacked, (std::vector<std::string>{"model.layers.0.mlp.experts.down_proj",
                                                    "model.layers.0.mlp.experts.gate_up_proj",
                                                    "model.layers.1.mlp.experts.down_proj",
                                                    "model.layers.1.mlp.experts.gate_up_proj"}));
  EXPECT_EQ(read.modules.size(), 8u);

  auto reloaded = models::load_model(kModels / "mixtral", mx::float32);
  reloaded->eval();
  auto paths = io::apply_adapter(*reloaded, out);
  EXPECT_EQ(paths.size(), 8u);
  EXPECT_EQ(io::adapter_parameters(*reloaded).names().size(), 16u);
  EXPECT_LT(relative_error((*reloaded)(ids), f.expected.at("lora_logits")), 1e-4f);
  EXPECT_LT(relative_error((*reloaded)(ids), (*model)(ids)), 1e-6f);
}

// With one stacked parameter adapted PEFT wraps the experts once: no base_layer.
TEST(ExpertAdapters, OneStackedParameterHasNoBaseLayer) {
  Fixture f = mixtral_fixture();
  nn::LoraConfig c = fixture_config();
  c.target_modules = {"down_proj"};
  auto model = models::load_model(kModels / "mixtral", mx::float32);
  model->eval();
  EXPECT_EQ(nn::apply_lora(*model, c),
            (std::vector<std::string>{"model.layers.0.mlp.experts.down_proj",
                                      "model.layers.1.mlp.experts.down_proj"}));
  ParamMap down;
  for (const auto& [name, value] : f.adapters)
    if (name.find("down_proj") != std::string::npos) down.set(name, value);
  model->update(down);
  fs::path out = temp_dir("down");
  io::save_peft_adapter(*model, c, "mixtral", out);
  ParamMap saved = ParamMap::load_safetensors((out / "adapter_model.safetensors").string());
  EXPECT_EQ(saved.names(), (std::vector<std::string>{
                               "base_model.model.model.layers.0.mlp.experts.lora_A.weight",
                               "base_model.model.model.layers.0.mlp.experts.lora_B.weight",
                               "base_model.model.model.layers.1.mlp.experts.lora_A.weight",
                               "base_model.model.model.layers.1.mlp.experts.lora_B.weight"}));
  std::ifstream config_file(out / "adapter_config.json");
  auto config = nlohmann::json::parse(config_file);
  EXPECT_EQ(config["target_modules"], nlohmann::json::array());
  EXPECT_EQ(config["target_parameters"], nlohmann::json({"mlp.experts.down_proj"}));

  auto reloaded = models::load_model(kModels / "mixtral", mx::float32);
  reloaded->eval();
  io::apply_adapter(*reloaded, out);
  mx::array ids = f.expected.at("ids");
  EXPECT_LT(relative_error((*reloaded)(ids), (*model)(ids)), 1e-6f);
  EXPECT_TRUE(
      mx::array_equal(reloaded->parameters().at("model.layers.1.mlp.experts.down_proj.lora_B"),
                      f.adapters.at("model.layers.1.mlp.experts.down_proj.lora_B"))
          .item<bool>());
}

TEST(ExpertAdapters, FusedModelGivesPeftsLogits) {
  Fixture f = mixtral_fixture();
  auto model = adapted_mixtral(f, fixture_config());
  auto paths = models::fuse_adapter(*model);
  EXPECT_EQ(paths.size(), 8u);
  EXPECT_TRUE(io::adapter_parameters(*model).empty());
  EXPECT_FALSE(model->parameters().contains("model.layers.0.mlp.experts.gate_up_proj.lora_A"));
  EXPECT_LT(relative_error((*model)(f.expected.at("ids")), f.expected.at("lora_logits")), 1e-4f);
}

TEST(ExpertAdapters, MlxLmLayoutAndMismatchesAreRefused) {
  Fixture f = mixtral_fixture();
  auto model = adapted_mixtral(f, fixture_config());
  testing::expect_error([&] { io::save_mlx_lm_adapter(*model, fixture_config(), temp_dir("mlx")); },
                        "no form for adapters on stacked expert parameters");

  // An adapter whose experts have another rank per expert than the config says.
  fs::path out = temp_dir("bad_rank");
  io::save_peft_adapter(*model, fixture_config(), "mixtral", out);
  std::ifstream in(out / "adapter_config.json");
  auto config = nlohmann::json::parse(in);
  in.close();
  config["r"] = 3;
  std::ofstream(out / "adapter_config.json") << config.dump();
  auto fresh = models::load_model(kModels / "mixtral", mx::float32);
  testing::expect_error([&] { io::apply_adapter(*fresh, out); }, "per expert");
}

}  // namespace
}  // namespace ft
