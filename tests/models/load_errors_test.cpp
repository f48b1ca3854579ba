// Config reading and the errors of load_model.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include <mlx/ops.h>

#include "ft/core/error.h"
#include "ft/core/param_map.h"
#include "ft/models/registry.h"

namespace mx = mlx::core;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

const fs::path kModels = fs::path(FT_TEST_DATA) / "models";

// A copy of a fixture folder in a fresh temporary directory.
class Scratch {
 public:
  explicit Scratch(const std::string& fixture) {
    dir_ = fs::temp_directory_path() /
           ("ft_models_" + fixture + "_" + std::to_string(reinterpret_cast<uintptr_t>(this)));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    fs::copy(kModels / fixture / "config.json", dir_ / "config.json");
    fs::copy(kModels / fixture / "model.safetensors", dir_ / "model.safetensors");
  }
  ~Scratch() { fs::remove_all(dir_); }
  const fs::path& dir() const { return dir_; }

  json config() const {
    std::ifstream in(dir_ / "config.json");
    return json::parse(in);
  }
  void write_config(const json& value) const {
    std::ofstream(dir_ / "config.json") << value.dump();
  }

 private:
  fs::path dir_;
};

// With metadata: ft/io refuses the "__metadata__": null that MLX writes for none.
void save_weights(const ft::ParamMap& weights, const fs::path& file) {
  weights.save_safetensors(file.string(), {{"format", "pt"}});
}

std::string load_error(const fs::path& folder) {
  try {
    ft::models::load_model(folder);
  } catch (const ft::Error& e) {
    return e.what();
  }
  return "";
}

ft::io::ModelConfig config_of(const json& value) {
  return {value, "config.json"};
}

TEST(LoadModel, UnknownModelTypeListsTheKnownOnes) {
  Scratch scratch("llama");
  json config = scratch.config();
  config["model_type"] = "gpt_neox";
  scratch.write_config(config);
  std::string message = load_error(scratch.dir());
  EXPECT_NE(message.find("unknown model_type 'gpt_neox'"), std::string::npos) << message;
  for (const char* known : {"llama", "mistral", "qwen2", "qwen3"})
    EXPECT_NE(message.find(known), std::string::npos) << message;
}

TEST(LoadModel, MissingUnexpectedAndMisShapedTensorsInOneError) {
  Scratch scratch("llama");
  ft::ParamMap weights =
      ft::ParamMap::load_safetensors((scratch.dir() / "model.safetensors").string());
  weights.erase("model.layers.1.mlp.up_proj.weight");
  weights.set("model.layers.0.self_attn.extra.weight", mx::zeros({2, 2}));
  weights.set("model.norm.weight", mx::ones({31}));
  save_weights(weights, scratch.dir() / "model.safetensors");
  std::string message = load_error(scratch.dir());
  EXPECT_NE(message.find("model.layers.1.mlp.up_proj.weight"), std::string::npos) << message;
  EXPECT_NE(message.find("model.layers.0.self_attn.extra.weight"), std::string::npos) << message;
  EXPECT_NE(message.find("model.norm.weight"), std::string::npos) << message;
}

TEST(LoadModel, MissingConfigFieldNamesIt) {
  Scratch scratch("qwen2");
  json config = scratch.config();
  config.erase("hidden_size");
  scratch.write_config(config);
  EXPECT_NE(load_error(scratch.dir()).find("hidden_size"), std::string::npos);
}

TEST(LoadModel, TiedCheckpointWithAnLmHeadCopyLoads) {
  Scratch scratch("llama3_tied");
  ft::ParamMap weights =
      ft::ParamMap::load_safetensors((scratch.dir() / "model.safetensors").string());
  ASSERT_FALSE(weights.contains("lm_head.weight"));
  weights.set("lm_head.weight", weights.at("model.embed_tokens.weight"));
  save_weights(weights, scratch.dir() / "model.safetensors");
  auto model = ft::models::load_model(scratch.dir());
  EXPECT_FALSE(model->parameters().contains("lm_head.weight"));
}

TEST(HfConfig, FamiliesSetTheirSwitches) {
  json base = {{"vocab_size", 16},       {"hidden_size", 8},         {"intermediate_size", 16},
               {"num_hidden_layers", 2}, {"num_attention_heads", 2}, {"rope_theta", 1000.0}};
  json qwen2 = base;
  qwen2["model_type"] = "qwen2";
  auto c = ft::models::from_hf_config(config_of(qwen2));
  EXPECT_TRUE(c.qkv_bias);
  EXPECT_FALSE(c.attention_bias);
  EXPECT_EQ(c.num_key_value_heads, 2);  // defaults to the number of heads
  EXPECT_EQ(c.sliding_window, 0);       // use_sliding_window is off by default

  json qwen3 = base;
  qwen3["model_type"] = "qwen3";
  qwen3["use_sliding_window"] = true;
  qwen3["sliding_window"] = 4;
  qwen3["layer_types"] = {"full_attention", "sliding_attention"};
  c = ft::models::from_hf_config(config_of(qwen3));
  EXPECT_TRUE(c.qk_norm);
  EXPECT_EQ(c.window_of_layer(0), 0);
  EXPECT_EQ(c.window_of_layer(1), 4);

  json mistral = base;
  mistral["model_type"] = "mistral";
  mistral["sliding_window"] = 3;
  c = ft::models::from_hf_config(config_of(mistral));
  EXPECT_EQ(c.window_of_layer(0), 3);
  EXPECT_FLOAT_EQ(c.rope_theta, 1000.0f);
}

TEST(HfConfig, ReadsLegacyRopeScaling) {
  json config = {{"model_type", "llama"},
                 {"vocab_size", 16},
                 {"hidden_size", 8},
                 {"intermediate_size", 16},
                 {"num_hidden_layers", 1},
                 {"num_attention_heads", 2},
                 {"rope_theta", 500000.0},
                 {"rope_scaling",
                  {{"type", "llama3"},
                   {"factor", 32.0},
                   {"low_freq_factor", 1.0},
                   {"high_freq_factor", 4.0},
                   {"original_max_position_embeddings", 8192}}}};
  auto c = ft::models::from_hf_config(config_of(config));
  EXPECT_EQ(c.rope_scaling.type, ft::models::RopeScaling::Type::llama3);
  EXPECT_FLOAT_EQ(c.rope_scaling.factor, 32.0f);
  EXPECT_EQ(c.rope_scaling.original_max_position_embeddings, 8192);
  EXPECT_FLOAT_EQ(c.rope_theta, 500000.0f);

  config["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}};
  try {
    ft::models::from_hf_config(config_of(config));
    FAIL() << "yarn accepted";
  } catch (const ft::Error& e) {
    EXPECT_NE(std::string(e.what()).find("yarn"), std::string::npos) << e.what();
  }
  config["rope_scaling"] = {{"rope_type", "linear"}};
  EXPECT_THROW(ft::models::from_hf_config(config_of(config)), ft::Error);  // no factor
}

}  // namespace

namespace {

// The first line of a load error and whether it names what it should.
::testing::AssertionResult names(const std::string& error, const std::vector<std::string>& parts) {
  if (error.empty()) return ::testing::AssertionFailure() << "no error";
  for (const auto& part : parts)
    if (error.find(part) == std::string::npos)
      return ::testing::AssertionFailure() << "'" << error << "' does not name '" << part << "'";
  return ::testing::AssertionSuccess();
}

TEST(FamilyErrors, AMissingFieldTheFamilyNeedsIsNamed) {
  Scratch gpt2("gpt2");
  json c = gpt2.config();
  c.erase("n_embd");
  gpt2.write_config(c);
  EXPECT_TRUE(names(load_error(gpt2.dir()), {"config.json", "n_embd"}));

  Scratch mixtral("mixtral");
  c = mixtral.config();
  c.erase("num_local_experts");
  mixtral.write_config(c);
  EXPECT_TRUE(names(load_error(mixtral.dir()), {"config.json", "num_local_experts"}));
}

TEST(FamilyErrors, AnUnknownRopeScalingTypeIsNamed) {
  Scratch phi3("phi3_longrope");
  json c = phi3.config();
  c["rope_parameters"]["rope_type"] = "yarn2";
  phi3.write_config(c);
  EXPECT_TRUE(names(load_error(phi3.dir()), {"config.json", "unsupported rope_scaling type 'yarn2'"}));

  c["rope_parameters"]["rope_type"] = "longrope";
  c["rope_parameters"]["long_factor"] = json::array({1.0, 2.0});
  phi3.write_config(c);
  EXPECT_TRUE(names(load_error(phi3.dir()), {"config.json", "short_factor and long_factor"}));
}

// Phi-3's fused weights under a Phi-2 config: every tensor that does not fit is listed.
TEST(FamilyErrors, WeightsOfAnotherFamilyAreListed) {
  Scratch phi("phi");
  fs::copy(kModels / "phi3" / "model.safetensors", phi.dir() / "model.safetensors",
           fs::copy_options::overwrite_existing);
  std::string error = load_error(phi.dir());
  EXPECT_TRUE(names(error, {phi.dir().string(), "qkv_proj", "dense"}));
}

TEST(FamilyErrors, ExpertCountsThatDoNotMatchTheTensorsAreNamed) {
  Scratch fewer("mixtral");
  json c = fewer.config();
  c["num_local_experts"] = 3;
  fewer.write_config(c);
  EXPECT_TRUE(names(load_error(fewer.dir()), {"experts.3.w1.weight", "past the 3 experts"}));

  Scratch more("mixtral");
  c = more.config();
  c["num_local_experts"] = 5;
  more.write_config(c);
  EXPECT_TRUE(names(load_error(more.dir()), {"experts.4.w1.weight", "is missing", "5 experts"}));

  Scratch fused("mixtral_fused");
  c = fused.config();
  c["num_local_experts"] = 5;
  fused.write_config(c);
  EXPECT_TRUE(names(load_error(fused.dir()), {"experts.gate_up_proj", "shape"}));
}

TEST(FamilyErrors, ConfigSizesOutOfRangeAreRefusedBeforeBuilding) {
  Scratch llama("llama");
  json c = llama.config();
  c["num_hidden_layers"] = 1048576;
  llama.write_config(c);
  EXPECT_TRUE(names(load_error(llama.dir()), {"num_hidden_layers", "between 1 and 256"}));
  c["num_hidden_layers"] = 2;
  c["hidden_size"] = 4294967360LL;
  llama.write_config(c);
  EXPECT_TRUE(names(load_error(llama.dir()), {"hidden_size", "4294967360"}));
}

}  // namespace
