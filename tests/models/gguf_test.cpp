// GGUF files as models: tests/golden/gguf/llama_f32.gguf (make_gguf_fixtures.py: the tiny
// Llama of models/llama written with the gguf package in llama.cpp's layout, q/k rows
// permuted) loads with the config transformers has for models/llama and gives its logits;
// the same weights in float16 give the same logits within float16's precision.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>

#include <mlx/ops.h>

#include "ft/io/gguf.h"
#include "ft/io/gguf_file.h"
#include "ft/io/model_folder.h"
#include "ft/models/export_gguf.h"
#include "ft/models/registry.h"
#include "tests/test_util.h"

namespace {

namespace fs = std::filesystem;
namespace mx = mlx::core;
const fs::path kGolden = FT_TEST_DATA;

float relative_error(const mx::array& a, const mx::array& b) {
  return (mx::max(mx::abs(a - b)) / mx::max(mx::abs(b))).item<float>();
}

TEST(Gguf, LlamaLoadsWithTransformersConfigAndLogits) {
  const fs::path file = kGolden / "gguf" / "llama_f32.gguf";
  ft::io::GgufModel gguf = ft::io::read_gguf_model(file);
  const auto hf = ft::io::read_config(kGolden / "models" / "llama").json();
  for (const char* key : {"model_type", "hidden_size", "intermediate_size", "num_hidden_layers",
                          "num_attention_heads", "num_key_value_heads", "head_dim", "vocab_size",
                          "max_position_embeddings", "rms_norm_eps", "tie_word_embeddings"})
    EXPECT_EQ(gguf.config[key], hf[key]) << key;
  EXPECT_EQ(gguf.config["rope_theta"], hf["rope_parameters"]["rope_theta"]);
  // Every tensor under its transformers name, q and k back in transformers' row order.
  ft::ParamMap reference = ft::io::load_weights(kGolden / "models" / "llama");
  ASSERT_EQ(gguf.weights.size(), reference.size());
  for (const auto& [name, value] : reference)
    EXPECT_TRUE(mx::array_equal(gguf.weights.at(name), value).item<bool>()) << name;

  auto model = ft::models::load_model(file);
  model->eval();
  ft::ParamMap expected =
      ft::ParamMap::load_safetensors((kGolden / "models" / "llama_expected.safetensors").string());
  EXPECT_LT(relative_error((*model)(expected.at("ids")), expected.at("logits")), 1e-4f);
}

TEST(Gguf, Float16LlamaLoadsWithTheSameLogits) {
  const fs::path file = kGolden / "gguf" / "llama_f16.gguf";
  ft::io::GgufModel gguf = ft::io::read_gguf_model(file);
  EXPECT_EQ(gguf.weights.at("model.layers.0.self_attn.q_proj.weight").dtype(), mx::float16);
  EXPECT_EQ(gguf.weights.at("model.norm.weight").dtype(), mx::float32);
  // q and k un-permuted in float16 hold the float16 roundings of transformers' rows.
  ft::ParamMap reference = ft::io::load_weights(kGolden / "models" / "llama");
  for (const auto& [name, value] : reference)
    EXPECT_TRUE(
        mx::array_equal(gguf.weights.at(name), mx::astype(value, gguf.weights.at(name).dtype()))
            .item<bool>())
        << name;

  auto model = ft::models::load_model(file);  // float32 compute over the float16 values
  model->eval();
  ft::ParamMap expected =
      ft::ParamMap::load_safetensors((kGolden / "models" / "llama_expected.safetensors").string());
  EXPECT_LT(relative_error((*model)(expected.at("ids")), expected.at("logits")), 1e-2f);
}

// Q4_0, Q4_1 and Q8_0 matrices stay quantized (Note [GGUF blocks as MLX affine groups]):
// quantized layers of 4 and 8 bits in groups of 32, q and k rows un-permuted with their
// scales, and transformers' logits for the file (its own dequantization).
TEST(Gguf, QuantizedLlamaStaysQuantizedWithTransformersLogits) {
  const fs::path file = kGolden / "gguf" / "llama_q.gguf";
  ft::io::GgufModel gguf = ft::io::read_gguf_model(file);
  EXPECT_TRUE(gguf.dequantized_types.empty());
  const auto& q = gguf.config["quantization"];
  EXPECT_EQ(q["model.layers.0.self_attn.q_proj"]["bits"], 4);
  EXPECT_EQ(q["model.layers.0.self_attn.v_proj"]["bits"], 8);
  EXPECT_EQ(q["model.embed_tokens"]["bits"], 8);
  EXPECT_FALSE(q.contains("model.layers.0.mlp.down_proj"));  // rows of 48: float32
  EXPECT_EQ(gguf.weights.at("model.layers.0.self_attn.k_proj.weight").dtype(), mx::uint32);
  EXPECT_EQ(gguf.weights.at("model.layers.0.self_attn.k_proj.scales").shape(), (mx::Shape{16, 1}));

  auto model = ft::models::load_model(file);
  model->eval();
  const auto names = model->parameters().names();
  EXPECT_NE(std::find(names.begin(), names.end(), "lm_head.scales"), names.end());
  ft::ParamMap expected =
      ft::ParamMap::load_safetensors((kGolden / "gguf" / "llama_q_expected.safetensors").string());
  EXPECT_LT(relative_error((*model)(expected.at("input_ids")), expected.at("logits")), 1e-4f);
}

// tests/golden/gguf/<family>_f32.gguf (make_gguf_family_fixtures.py: the tiny models of
// models/<family> in llama.cpp's layout, with the gguf package's names for the
// architecture, checked there against transformers' GGUF loader) load with the config
// transformers has for the folder, every tensor under its name, and the folder's logits.
class GgufFamily : public ::testing::TestWithParam<std::string> {};

TEST_P(GgufFamily, LoadsWithTheFolderConfigTensorsAndLogits) {
  const std::string family = GetParam();
  const fs::path file = kGolden / "gguf" / (family + "_f32.gguf");
  ft::io::GgufModel gguf = ft::io::read_gguf_model(file);
  const auto hf = ft::io::read_config(kGolden / "models" / family).json();
  for (const char* key : {"model_type", "hidden_size", "intermediate_size", "num_hidden_layers",
                          "num_attention_heads", "num_key_value_heads", "vocab_size",
                          "max_position_embeddings", "rms_norm_eps", "tie_word_embeddings"})
    EXPECT_EQ(gguf.config[key], hf[key]) << family << " " << key;
  EXPECT_EQ(gguf.config["head_dim"],
            hf.value("head_dim", int(hf["hidden_size"]) / int(hf["num_attention_heads"])));
  EXPECT_EQ(gguf.config["rope_theta"], hf["rope_parameters"]["rope_theta"]);
  ft::ParamMap reference = ft::io::load_weights(kGolden / "models" / family);
  ASSERT_EQ(gguf.weights.size(), reference.size());
  for (const auto& [name, value] : reference)
    EXPECT_TRUE(mx::array_equal(gguf.weights.at(name), value).item<bool>()) << name;

  auto model = ft::models::load_model(file);
  model->eval();
  ft::ParamMap expected = ft::ParamMap::load_safetensors(
      (kGolden / "models" / (family + "_expected.safetensors")).string());
  EXPECT_LT(relative_error((*model)(expected.at("ids")), expected.at("logits")), 1e-4f);
}

INSTANTIATE_TEST_SUITE_P(Families, GgufFamily,
                         ::testing::Values("qwen2", "qwen3", "phi3", "phi3_longrope"));

// tests/golden/gguf/gemma2_f32.gguf and gemma3_f32.gguf (make_gguf_family_fixtures.py:
// tiny Gemma models with the settings llama.cpp assumes, norms stored as 1 + w) load with
// those settings and give the models' logits.
TEST(Gguf, GemmaLoadsWithLlamaCppSettingsAndTheModelsLogits) {
  for (const std::string family : {"gemma2", "gemma3"}) {
    const fs::path file = kGolden / "gguf" / (family + "_f32.gguf");
    const auto config = ft::io::read_gguf_model(file).config;
    EXPECT_EQ(config["query_pre_attn_scalar"], 8) << family;
    EXPECT_EQ(config["sliding_window"], 5) << family;
    EXPECT_EQ(config["model_type"], family == "gemma2" ? "gemma2" : "gemma3_text");
    auto model = ft::models::load_model(file);
    model->eval();
    const auto& c = model->config();
    for (int i = 0; i < c.num_hidden_layers; ++i)  // Gemma 2: every second full; 3: sixth
      EXPECT_EQ(c.layer_is(i, "full_attention"), (i + 1) % (family == "gemma2" ? 2 : 6) == 0)
          << family << " layer " << i;
    ft::ParamMap expected = ft::ParamMap::load_safetensors(
        (kGolden / "gguf" / (family + "_expected.safetensors")).string());
    EXPECT_LT(relative_error((*model)(expected.at("ids")), expected.at("logits")), 1e-4f) << family;
  }
}

// tests/golden/gguf/llama3_tied_f32.gguf (make_gguf_family_fixtures.py): Llama 3's rotary
// scaling as llama.cpp's rope_freqs tensor becomes the folder's llama3 parameters and its
// logits; ft export writes the same tensor back.
TEST(Gguf, Llama3RopeFreqsBecomeTheLlama3Scaling) {
  const fs::path file = kGolden / "gguf" / "llama3_tied_f32.gguf";
  const auto config = ft::io::read_gguf_model(file).config;
  const auto hf = ft::io::read_config(kGolden / "models" / "llama3_tied").json();
  const auto& rope = hf["rope_parameters"];
  ASSERT_TRUE(config.contains("rope_scaling"));
  EXPECT_EQ(config["rope_scaling"]["rope_type"], "llama3");
  for (const char* key :
       {"factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"})
    EXPECT_EQ(config["rope_scaling"][key].get<double>(), rope[key].get<double>()) << key;
  auto model = ft::models::load_model(file);
  model->eval();
  ft::ParamMap expected = ft::ParamMap::load_safetensors(
      (kGolden / "models" / "llama3_tied_expected.safetensors").string());
  EXPECT_LT(relative_error((*model)(expected.at("ids")), expected.at("logits")), 1e-4f);

  const fs::path out = fs::temp_directory_path() / "ft_export_llama3_tied.gguf";
  ft::models::export_gguf(file, out,
                          {.type = ft::models::GgufFileType::F32, .adapter = std::nullopt});
  const auto source = ft::io::read_gguf_file(file), written = ft::io::read_gguf_file(out);
  const auto* a = source.find_tensor("rope_freqs.weight");
  const auto* b = written.find_tensor("rope_freqs.weight");
  ASSERT_TRUE(a && b);
  EXPECT_TRUE(
      mx::array_equal(ft::io::load_gguf_tensor(written, *b), ft::io::load_gguf_tensor(source, *a))
          .item<bool>());
  fs::remove(out);
}

TEST(Gguf, BadFilesAreOneError) {
  ft::testing::expect_error([] { ft::io::read_gguf_model("/nonexistent/model.gguf"); },
                            "/nonexistent/model.gguf: no such file");
  const fs::path not_gguf = kGolden / "models" / "llama" / "config.json";
  ft::testing::expect_error([&] { ft::io::read_gguf_model(not_gguf); },
                            not_gguf.string() + ": not a GGUF file");
  const fs::path types = kGolden / "gguf" / "types.gguf";
  ft::testing::expect_error([&] { ft::io::read_gguf_model(types); },
                            types.string() + ": architecture 'test' is not supported");
}

}  // namespace
