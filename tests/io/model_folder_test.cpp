#include <gtest/gtest.h>

#include <regex>

#include <mlx/ops.h>
#include <mlx/random.h>

#include "ft/io/model_folder.h"
#include "ft/io/safetensors_file.h"
#include "io_test_util.h"

namespace mx = mlx::core;
namespace fs = std::filesystem;
using ft::testing::error_of;
using ft::testing::TempDir;
using nlohmann::json;

namespace {

void copy_folder(const fs::path& from, const fs::path& to) {
  fs::copy(from, to, fs::copy_options::recursive);
}

}  // namespace

TEST(Config, TypedFieldsAndErrors) {
  auto config = ft::io::read_config(ft::testing::golden_io("llama_sharded"));
  EXPECT_EQ(config.get_string("model_type"), "llama");
  EXPECT_EQ(config.get_int("hidden_size"), 16);
  EXPECT_EQ(config.get_int("num_hidden_layers"), 2);
  EXPECT_DOUBLE_EQ(config.get_number("rms_norm_eps"), 1e-6);
  EXPECT_FALSE(config.get_bool("tie_word_embeddings"));
  EXPECT_EQ(config.get_int("sliding_window", 7), 7);
  const std::string file = config.file().string();
  EXPECT_EQ(error_of([&] { config.get_int("head_dimension"); }),
            "[config] " + file + ": field 'head_dimension' is missing");
  EXPECT_EQ(
      error_of([&] { config.get_int("model_type"); }),
      "[config] " + file + ": field 'model_type' must be an integer, got a string (\"llama\")");
  EXPECT_EQ(error_of([&] { config.get_string("hidden_size", "x"); }),
            "[config] " + file + ": field 'hidden_size' must be a string, got an integer (16)");
  EXPECT_EQ(
      error_of([&] { config.get_bool("rms_norm_eps"); }),
      "[config] " + file + ": field 'rms_norm_eps' must be true or false, got a number (1e-06)");
}

// Integers past int64, or floats that are not whole or out of its range, are refused,
// not converted (1e300 to int64 is undefined; 2^64 - 1 would wrap to -1).
TEST(Config, IntegersOutOfRangeAreRefused) {
  nlohmann::json j = {{"a", 1e300},
                      {"b", 18446744073709551615ull},
                      {"c", 4096.0},
                      {"d", 2.5},
                      {"quantization", {{"group_size", 4294967360ll}, {"bits", 4}}}};
  ft::io::ModelConfig config(j, "config.json");
  EXPECT_EQ(error_of([&] { config.get_int("a"); }),
            "[config] config.json: field 'a' must be an integer, got 1e+300");
  EXPECT_EQ(error_of([&] { config.get_int("b"); }),
            "[config] config.json: field 'b' is out of range (18446744073709551615)");
  EXPECT_EQ(config.get_int("c"), 4096);
  EXPECT_EQ(error_of([&] { config.get_int("d"); }),
            "[config] config.json: field 'd' must be an integer, got 2.5");
  EXPECT_NE(error_of([&] { ft::io::quantization_config(config); }).find("group_size must be 32"),
            std::string::npos);
}

TEST(Config, MissingAndBrokenFiles) {
  TempDir dir;
  EXPECT_EQ(error_of([&] { ft::io::read_config(dir.path() / "nope"); }),
            "[config] " + (dir.path() / "nope").string() + ": no such file or folder");
  EXPECT_EQ(error_of([&] { ft::io::read_config(dir.path()); }),
            "[config] " + (dir.path() / "config.json").string() + ": no such file");
  ft::testing::write_bytes(dir.path() / "config.json", "{\"a\": 1,");
  EXPECT_NE(error_of([&] {
              ft::io::read_config(dir.path());
            }).find("[config] " + (dir.path() / "config.json").string() + ": not valid JSON"),
            std::string::npos);
  // A number past double's range is nlohmann's out_of_range, not a parse_error.
  ft::testing::write_bytes(dir.path() / "config.json", "{\"hidden_size\": 1e999}");
  EXPECT_NE(error_of([&] {
              ft::io::read_config(dir.path());
            }).find("[config] " + (dir.path() / "config.json").string() + ": not valid JSON"),
            std::string::npos);
  ft::testing::write_bytes(dir.path() / "config.json", "[1, 2]");
  EXPECT_EQ(error_of([&] { ft::io::read_config(dir.path()); }),
            "[config] " + (dir.path() / "config.json").string() + ": not a JSON object");
}

TEST(Weights, ShardedSafetensorsEqualTheStateDict) {
  // The reference: the same model's state dict saved by the safetensors library in one file.
  auto want = ft::ParamMap::load_safetensors(ft::testing::golden_io("llama_expected.safetensors"));
  auto got = ft::io::load_weights(ft::testing::golden_io("llama_sharded"));
  EXPECT_EQ(got.size(), 21u);  // embed, 2 x (7 linears + 2 norms), norm, lm_head
  ft::testing::expect_same(got, want);
  auto half = ft::io::load_weights(ft::testing::golden_io("llama_sharded"), mx::float16);
  EXPECT_EQ(half.at("lm_head.weight").dtype(), mx::float16);
  EXPECT_TRUE(
      mx::array_equal(half.at("lm_head.weight"), mx::astype(want.at("lm_head.weight"), mx::float16))
          .item<bool>());
}

TEST(Weights, CorruptIndex) {
  TempDir dir;
  const fs::path folder = dir.path() / "m";
  copy_folder(ft::testing::golden_io("llama_sharded"), folder);
  const fs::path index = folder / "model.safetensors.index.json";
  const std::string text = ft::testing::read_bytes(index);

  // A tensor listed twice (JSON itself allows duplicate keys).
  std::string twice = text;
  twice.replace(twice.find("\"weight_map\": {") + 15, 0,
                "\n    \"model.norm.weight\": \"model-00001-of-00009.safetensors\",");
  ft::testing::write_bytes(index, twice);
  EXPECT_EQ(
      error_of([&] { ft::io::load_weights(folder); }),
      "[weights] " + index.string() + ": tensor 'model.norm.weight' is listed twice in weight_map");

  // A tensor mapped to a shard that does not hold it.
  std::string wrong = std::regex_replace(text, std::regex("\"lm_head.weight\": \"model-00008"),
                                         "\"lm_head.weight\": \"model-00007");
  ft::testing::write_bytes(index, wrong);
  EXPECT_EQ(error_of([&] { ft::io::load_weights(folder); }),
            "[weights] " + index.string() +
                ": tensor 'lm_head.weight' listed for shard 'model-00007-of-00009.safetensors' not "
                "found in it");

  // A missing shard.
  ft::testing::write_bytes(index, text);
  fs::remove(folder / "model-00003-of-00009.safetensors");
  EXPECT_EQ(error_of([&] { ft::io::load_weights(folder); }),
            "[weights] " + index.string() +
                ": shard 'model-00003-of-00009.safetensors' (holding "
                "'model.layers.0.mlp.gate_proj.weight') "
                "does not exist");

  ft::testing::write_bytes(index, "{\"metadata\": {}}");
  EXPECT_EQ(error_of([&] { ft::io::load_weights(folder); }),
            "[weights] " + index.string() + ": no \"weight_map\" object");
}

TEST(Weights, NonexistentOrEmpty) {
  TempDir dir;
  EXPECT_EQ(error_of([&] { ft::io::load_weights(dir.path() / "missing"); }),
            "[weights] " + (dir.path() / "missing").string() + ": no such file or folder");
  EXPECT_EQ(error_of([&] { ft::io::load_weights(dir.path()); }),
            "[weights] " + dir.path().string() +
                ": no weights found (looked for *.safetensors, an index.json, pytorch_model.bin "
                "and *.npz)");
  ft::testing::write_bytes(dir.path() / "w.gguf", "x");
  EXPECT_NE(
      error_of([&] { ft::io::load_weights(dir.path() / "w.gguf"); }).find("unknown weights format"),
      std::string::npos);
}

TEST(Weights, NpzEqualsNumpy) {
  auto want = ft::ParamMap::load_safetensors(ft::testing::golden_io("arrays_expected.safetensors"));
  auto got = ft::io::load_weights(ft::testing::golden_io("arrays.npz"));
  // 'f' was saved in Fortran order; it must come back with the same logical values.
  ft::testing::expect_same(got, want);
  // np.savez_compressed: the same arrays in deflated zip members.
  ft::testing::expect_same(ft::io::load_weights(ft::testing::golden_io("arrays_compressed.npz")),
                           want);
}

TEST(Save, RoundTripShardsAtTheLimit) {
  TempDir dir;
  mx::random::seed(3);
  ft::ParamMap weights;
  for (int i = 0; i < 6; ++i)
    weights.set("layers." + std::to_string(i) + ".w",
                mx::random::normal({8, 8}));         // 256 bytes each
  weights.set("big", mx::random::normal({40, 10}));  // 1600 bytes
  weights.set("half", mx::astype(mx::random::normal({4}), mx::float16));
  weights.set("ids", mx::arange(5, mx::int32));
  weights.eval();
  const json config = {{"model_type", "toy"}, {"hidden_size", 8}};
  fs::path tokenizer = dir.path() / "tok";
  fs::create_directories(tokenizer);
  ft::testing::write_bytes(tokenizer / "tokenizer.json", "{\"version\": \"1.0\"}");
  ft::testing::write_bytes(tokenizer / "tokenizer_config.json", "{}");
  const fs::path out = dir.path() / "saved";
  ft::io::save_model_folder(
      weights, config, out,
      {.max_shard_bytes = 600, .json_files = {}, .copy_tokenizer_from = tokenizer});

  // 256+256 | 256+256 | 256+256 | 1600 (alone, over the limit) | 8+20
  const json index = json::parse(ft::testing::read_bytes(out / "model.safetensors.index.json"));
  EXPECT_EQ(index["metadata"]["total_size"], 6 * 256 + 1600 + 8 + 20);
  ASSERT_EQ(index["weight_map"].size(), weights.size());
  for (const auto& name : weights.names()) EXPECT_TRUE(index["weight_map"].contains(name)) << name;
  EXPECT_EQ(index["weight_map"]["layers.1.w"], "model-00001-of-00005.safetensors");
  EXPECT_EQ(index["weight_map"]["layers.2.w"], "model-00002-of-00005.safetensors");
  EXPECT_EQ(index["weight_map"]["big"], "model-00004-of-00005.safetensors");
  EXPECT_EQ(index["weight_map"]["ids"], "model-00005-of-00005.safetensors");
  for (int k = 1; k <= 5; ++k) {
    const fs::path shard = out / ("model-0000" + std::to_string(k) + "-of-00005.safetensors");
    uint64_t bytes = 0;
    for (const auto& e : ft::io::read_safetensors_header(shard).tensors) bytes += e.end - e.begin;
    if (k != 4) {
      EXPECT_LE(bytes, 600u) << shard;
    }
  }
  // config.json states the dtype the weights were saved in.
  json with_dtype = config;
  with_dtype["dtype"] = "float32";
  EXPECT_EQ(json::parse(ft::testing::read_bytes(out / "config.json")), with_dtype);
  EXPECT_EQ(ft::testing::read_bytes(out / "tokenizer.json"), "{\"version\": \"1.0\"}");
  EXPECT_TRUE(fs::exists(out / "tokenizer_config.json"));
  ft::testing::expect_same(ft::io::load_weights(out), ft::testing::sorted(weights));
  // Only the finished folder is left beside it.
  EXPECT_EQ(std::distance(fs::directory_iterator(dir.path()), fs::directory_iterator()), 2);

  // One shard: model.safetensors, no index; the old folder is replaced.
  ft::io::save_model_folder(weights, config, out);
  EXPECT_TRUE(fs::exists(out / "model.safetensors"));
  EXPECT_FALSE(fs::exists(out / "model.safetensors.index.json"));
  EXPECT_FALSE(fs::exists(out / "tokenizer.json"));
  ft::testing::expect_same(ft::io::load_weights(out), ft::testing::sorted(weights));
}

TEST(Save, FailuresLeaveNothingThatLooksComplete) {
  TempDir dir;
  ft::ParamMap weights{{"w", mx::ones({2, 2})}};
  // The parent is a file: cannot be created, whoever runs the test (root included).
  ft::testing::write_bytes(dir.path() / "file", "x");
  const fs::path blocked = dir.path() / "file" / "out";
  EXPECT_NE(
      error_of([&] {
        ft::io::save_model_folder(weights, json::object(), blocked);
      }).find("[save] " + blocked.string() + ": cannot create " + (dir.path() / "file").string()),
      std::string::npos);

  // Failing after the weights are written (no tokenizer files): no output folder, no leftovers.
  fs::create_directories(dir.path() / "empty_tok");
  const fs::path out = dir.path() / "out";
  EXPECT_EQ(error_of([&] {
              ft::io::save_model_folder(
                  weights, json::object(), out,
                  {.json_files = {}, .copy_tokenizer_from = dir.path() / "empty_tok"});
            }),
            "[save] " + (dir.path() / "empty_tok").string() + ": no tokenizer files to copy");
  EXPECT_FALSE(fs::exists(out));
  EXPECT_EQ(std::distance(fs::directory_iterator(dir.path()), fs::directory_iterator()), 2);
  EXPECT_NE(error_of([&] {
              ft::io::save_model_folder({}, json::object(), out);
            }).find("no tensors to save"),
            std::string::npos);
}

TEST(Quantized, ConfigAndTensorsOfAnMlxFolder) {
  TempDir dir;
  mx::random::seed(5);
  const mx::array w = mx::random::normal({8, 64});  // (out, in)
  auto q = mx::quantize(w, 32, 4);
  ft::ParamMap weights{{"model.layers.0.mlp.down_proj.weight", q[0]},
                       {"model.layers.0.mlp.down_proj.scales", q[1]},
                       {"model.layers.0.mlp.down_proj.biases", q[2]},
                       {"model.norm.weight", mx::ones({64})}};
  const json config = {{"model_type", "llama"},
                       {"quantization",
                        {{"group_size", 32},
                         {"bits", 4},
                         {"lm_head", false},
                         {"model.layers.1.mlp.gate_proj", {{"group_size", 64}, {"bits", 8}}}}}};
  ft::io::save_model_folder(weights, config, dir.path() / "q");

  auto loaded = ft::io::load_weights(dir.path() / "q", mx::bfloat16);
  EXPECT_EQ(loaded.at("model.layers.0.mlp.down_proj.weight").dtype(),
            mx::uint32);  // packed, not cast
  EXPECT_TRUE(mx::array_equal(loaded.at("model.layers.0.mlp.down_proj.weight"), q[0]).item<bool>());
  EXPECT_EQ(loaded.at("model.layers.0.mlp.down_proj.scales").dtype(), mx::bfloat16);
  EXPECT_EQ(ft::io::quantized_modules(loaded),
            (std::vector<std::string>{"model.layers.0.mlp.down_proj"}));

  auto qc = ft::io::quantization_config(ft::io::read_config(dir.path() / "q"));
  ASSERT_TRUE(qc.has_value());
  EXPECT_EQ(qc->defaults.group_size, 32);
  EXPECT_EQ(qc->defaults.bits, 4);
  EXPECT_FALSE(qc->for_module("lm_head").has_value());
  EXPECT_EQ(qc->for_module("model.layers.1.mlp.gate_proj")->bits, 8);
  EXPECT_EQ(qc->for_module("model.layers.0.mlp.down_proj")->group_size, 32);
  // The loaded tensors dequantize to the original weight (within 4-bit error).
  auto back =
      mx::dequantize(loaded.at("model.layers.0.mlp.down_proj.weight"),
                     mx::astype(loaded.at("model.layers.0.mlp.down_proj.scales"), mx::float32),
                     mx::astype(loaded.at("model.layers.0.mlp.down_proj.biases"), mx::float32),
                     qc->defaults.group_size, qc->defaults.bits);
  EXPECT_LT(mx::max(mx::abs(back - w)).item<float>(), 0.5f);

  ft::testing::write_bytes(dir.path() / "q" / "config.json",
                           R"({"quantization": {"group_size": 32, "bits": 7}})");
  EXPECT_EQ(error_of([&] { ft::io::quantization_config(ft::io::read_config(dir.path() / "q")); }),
            "[config] " + (dir.path() / "q" / "config.json").string() +
                ": \"quantization\": bits must be 2, 3, 4, 5, 6 or 8, got 7");
  EXPECT_FALSE(
      ft::io::quantization_config(ft::io::read_config(ft::testing::golden_io("llama_sharded"))));
}
