// Quantized models: folders written by mlx-lm (tests/golden/quantized/make_quantized.py)
// against mlx-lm's logits, ft's quantize + save + reload, QLoRA training, fusing an
// adapter into a quantized base, and the errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include <mlx/ops.h>
#include <mlx/random.h>
#include <mlx/transforms.h>

#include "ft/core/param_map.h"
#include "ft/io/adapters.h"
#include "ft/io/model_folder.h"
#include "ft/models/fuse.h"
#include "ft/models/quantize.h"
#include "ft/models/registry.h"
#include "ft/nn/experts.h"
#include "ft/nn/lora.h"
#include "ft/train/losses.h"
#include "tests/test_util.h"

namespace mx = mlx::core;
namespace fs = std::filesystem;
using ft::testing::expect_error;
using nlohmann::json;

namespace {

const fs::path kGolden = fs::path(FT_TEST_DATA);
const fs::path kQuantized = kGolden / "quantized";
const fs::path kLlama = kGolden / "models" / "llama";

fs::path temp(const std::string& name) {
  fs::path p =
      fs::temp_directory_path() / ("ft_quantized_" + std::to_string(::getpid()) + "_" + name);
  fs::remove_all(p);
  return p;
}

// max |a - b| / max |b|.
float relative_error(const mx::array& actual, const mx::array& expected) {
  EXPECT_EQ(actual.shape(), expected.shape());
  mx::array diff = mx::max(mx::abs(mx::astype(actual, mx::float32) - expected));
  mx::array scale = mx::maximum(mx::max(mx::abs(expected)), mx::array(1e-12f));
  return (diff / scale).item<float>();
}

bool identical(const mx::array& a, const mx::array& b) {
  return a.shape() == b.shape() && a.dtype() == b.dtype() && mx::array_equal(a, b).item<bool>();
}

// Predict ids[:, 1:] from logits[:, :-1], mean over tokens.
mx::array shifted_loss(const mx::array& logits, const mx::array& ids) {
  int length = logits.shape(1);
  mx::array head = mx::slice(logits, {0, 0, 0}, {logits.shape(0), length - 1, logits.shape(2)});
  mx::array targets = mx::slice(ids, {0, 1}, {ids.shape(0), length});
  return ft::train::cross_entropy(head, targets, {.reduction = ft::train::Reduction::mean});
}

mx::array fixed_ids() {
  return mx::array({3, 17, 99, 5, 42, 8, 120, 64, 1, 77, 31, 2}, {1, 12}, mx::int32);
}

std::string type_at(const ft::nn::Module& model, const std::string& path) {
  auto m = model.find_module(path);
  return m ? m->type_name() : "none";
}

std::vector<std::string> sorted(std::vector<std::string> v) {
  std::sort(v.begin(), v.end());
  return v;
}

json read_json(const fs::path& file) {
  std::ifstream in(file);
  return json::parse(in);
}

// models/llama quantized by ft at 4 bits in groups of 32, as make_quantized.py has
// mlx-lm do it for llama_q4_g32.
std::unique_ptr<ft::models::CausalLM> quantized_llama() {
  auto model = ft::models::load_model(kLlama);
  ft::models::quantize_model(*model, {.group_size = 32, .bits = 4});
  return model;
}

void save_quantized(const ft::models::CausalLM& model, const ft::io::QuantSpec& spec,
                    const fs::path& out) {
  json config = ft::io::read_config(kLlama).json();
  ft::models::set_quantization_config(config, spec);
  ft::io::save_model_folder(model.parameters(), config, out);
}

// Random nonzero adapters on q_proj and v_proj (B starts at zero, which would hide
// every adapter path).
ft::nn::LoraConfig add_random_lora(ft::nn::Module& model) {
  ft::nn::LoraConfig lora;
  lora.rank = 4;
  lora.alpha = 8.0f;
  lora.target_modules = {"q_proj", "v_proj"};
  lora.seed = 3;
  ft::nn::apply_lora(model, lora);
  ft::ParamMap adapters = model.trainable_parameters();
  ft::ParamMap random;
  int i = 0;
  for (const auto& [name, value] : adapters)
    random.set(name, mx::random::normal(value.shape(), value.dtype(), 0.0f, 0.3f,
                                        mx::random::key(100 + i++)));
  model.update(random);
  return lora;
}

// 30 steps of SGD (lr 0.05) on the model's trainable parameters over a repeating
// sequence: the loss falls below 0.7 of the first, and every other parameter (the
// quantized base) stays as it was. Returns the first step's gradients by name.
ft::ParamMap expect_sgd_trains_only_the_adapters(ft::models::CausalLM& model) {
  const ft::ParamMap trainable = model.trainable_parameters();
  const ft::ParamMap before = model.parameters();
  mx::array ids =
      mx::array({5, 9, 14, 5, 9, 14, 5, 9, 14, 5, 9, 14, 5, 9, 14, 5}, {1, 16}, mx::int32);
  std::vector<std::string> names = trainable.names();
  auto loss_fn = [&](const std::vector<mx::array>& values) {
    model.update(ft::ParamMap::zip(names, values));
    return std::vector<mx::array>{shifted_loss(model(ids), ids)};
  };
  std::vector<int> argnums(names.size());
  for (size_t i = 0; i < names.size(); ++i) argnums[i] = static_cast<int>(i);
  auto grad_fn = mx::value_and_grad(loss_fn, argnums);
  std::vector<mx::array> values = trainable.arrays();
  ft::ParamMap first_grads;
  float first = 0, last = 0;
  for (int step = 0; step < 30; ++step) {
    auto [loss, grads] = grad_fn(values);
    if (step == 0) first_grads = ft::ParamMap::zip(names, grads);
    for (size_t i = 0; i < values.size(); ++i) values[i] = values[i] - 0.05f * grads[i];
    mx::eval(values);
    float value = loss[0].item<float>();
    if (step == 0) first = value;
    last = value;
  }
  EXPECT_LT(last, 0.7f * first) << first << " -> " << last;
  model.update(ft::ParamMap::zip(names, values));
  const ft::ParamMap after = model.parameters();
  for (const auto& [name, value] : before) {
    if (!trainable.contains(name)) {
      EXPECT_TRUE(identical(after.at(name), value)) << name;
    }
  }
  return first_grads;
}

}  // namespace

class MlxLmFolder : public ::testing::TestWithParam<std::string> {};

TEST_P(MlxLmFolder, LoadsWithMlxLmsNamesAndGivesItsLogits) {
  const std::string name = GetParam();
  const fs::path folder = kQuantized / name;
  auto model = ft::models::load_model(folder);
  model->eval();

  // Every tensor mlx-lm wrote is one of ft's parameters under the same name, and the
  // other way round.
  EXPECT_EQ(sorted(ft::io::load_weights(folder).names()), sorted(model->parameters().names()));

  ft::ParamMap expected =
      ft::ParamMap::load_safetensors((kQuantized / (name + "_expected.safetensors")).string());
  mx::array logits = (*model)(expected.at("ids"));
  EXPECT_LT(relative_error(logits, expected.at("logits")), ft::testing::tf32_tolerance(1e-4f))
      << name;

  // down_proj's input (48) is no multiple of 32: mlx-lm left it in floats.
  EXPECT_EQ(type_at(*model, "model.layers.0.mlp.down_proj"), "Linear");
  EXPECT_EQ(type_at(*model, "model.layers.1.mlp.gate_proj"), "QuantizedLinear");
  EXPECT_EQ(type_at(*model, "model.embed_tokens"), "QuantizedEmbedding");
  if (name == "llama_q4_g32") {
    EXPECT_EQ(type_at(*model, "lm_head"), "QuantizedLinear");
  } else {
    EXPECT_EQ(type_at(*model, "lm_head"), "none");  // tied
    auto q = std::dynamic_pointer_cast<ft::nn::QuantizedLinear>(
        model->find_module("model.layers.0.self_attn.q_proj"));
    ASSERT_NE(q, nullptr);
    EXPECT_EQ(q->bits(), 8);  // the per-module entry
    EXPECT_EQ(type_at(*model, "model.layers.1.self_attn.v_proj"), "Linear");
  }
}

INSTANTIATE_TEST_SUITE_P(Quantized, MlxLmFolder,
                         ::testing::Values("llama_q4_g32", "llama3_tied_mixed"));

TEST(QuantizeModel, PacksTheSameLayersAsMlxLm) {
  auto model = ft::models::load_model(kLlama);
  auto paths = ft::models::quantize_model(*model, {.group_size = 32, .bits = 4});
  // Every Linear whose input is 32 wide, the embedding and lm_head; not down_proj.
  EXPECT_EQ(paths.size(), 2u * 6 + 2);
  EXPECT_TRUE(std::find(paths.begin(), paths.end(), "model.embed_tokens") != paths.end());
  EXPECT_TRUE(std::find(paths.begin(), paths.end(), "lm_head") != paths.end());
  EXPECT_EQ(type_at(*model, "model.layers.1.mlp.down_proj"), "Linear");
  // The same tensors, bit for bit, as mlx-lm's quantization of the same model.
  ft::ParamMap mlx_lm = ft::io::load_weights(kQuantized / "llama_q4_g32");
  ft::ParamMap ours = model->parameters();
  ASSERT_EQ(sorted(ours.names()), sorted(mlx_lm.names()));
  for (const auto& [name, value] : mlx_lm) EXPECT_TRUE(identical(ours.at(name), value)) << name;
}

TEST(QuantizeModel, SaveAndReloadGiveTheSameLogits) {
  auto model = quantized_llama();
  model->eval();
  mx::array before = (*model)(fixed_ids());
  // Quantization changes the model, though not by much.
  auto float_model = ft::models::load_model(kLlama);
  float error = relative_error(before, (*float_model)(fixed_ids()));
  EXPECT_GT(error, 1e-4f);
  EXPECT_LT(error, 0.5f);

  fs::path out = temp("saved");
  save_quantized(*model, {.group_size = 32, .bits = 4}, out);
  json config = read_json(out / "config.json");
  EXPECT_EQ(config["quantization"], (json{{"group_size", 32}, {"bits", 4}}));
  EXPECT_EQ(config["quantization_config"], config["quantization"]);

  auto reloaded = ft::models::load_model(out);
  EXPECT_EQ(type_at(*reloaded, "lm_head"), "QuantizedLinear");
  EXPECT_TRUE(identical((*reloaded)(fixed_ids()), before));
  fs::remove_all(out);
}

TEST(QuantizeModel, EightBitsAreFinerThanFourWithTiedEmbeddings) {
  const fs::path folder = kGolden / "models" / "llama3_tied";
  mx::array reference = (*ft::models::load_model(folder))(fixed_ids());
  float error[2];
  for (int bits : {4, 8}) {
    auto model = ft::models::load_model(folder);
    ft::models::quantize_model(*model, {.group_size = 32, .bits = bits});
    EXPECT_EQ(type_at(*model, "model.embed_tokens"), "QuantizedEmbedding");
    error[bits / 8] = relative_error((*model)(fixed_ids()), reference);
  }
  // Each extra bit halves the quantization step: 16 times finer, give or take.
  EXPECT_LT(error[1], error[0] / 8);
}

TEST(QuantizeModel, DequantizeGivesFloatLayersWithTheSameOutputs) {
  auto model = quantized_llama();
  mx::array quantized = (*model)(fixed_ids());
  auto paths = ft::models::dequantize_model(*model);
  EXPECT_EQ(paths.size(), 14u);
  EXPECT_EQ(type_at(*model, "lm_head"), "Linear");
  EXPECT_EQ(type_at(*model, "model.embed_tokens"), "Embedding");
  EXPECT_LT(relative_error((*model)(fixed_ids()), quantized), ft::testing::tf32_tolerance(1e-5f));
}

TEST(QuantizeModel, Errors) {
  auto model = ft::models::load_model(kLlama);
  expect_error([&] { ft::models::quantize_model(*model, {.group_size = 32, .bits = 7}); },
               "bits must be 2, 3, 4, 5, 6 or 8, got 7");
  expect_error([&] { ft::models::quantize_model(*model, {.group_size = 48, .bits = 4}); },
               "group_size must be 32, 64 or 128, got 48");
  // Nothing in the tiny model is 128 wide.
  expect_error([&] { ft::models::quantize_model(*model, {.group_size = 128, .bits = 4}); },
               "no Linear, Embedding or stacked expert weight has an input size that group_size "
               "128 divides");
  EXPECT_EQ(type_at(*model, "lm_head"), "Linear");  // left as it was

  auto quantized = quantized_llama();
  expect_error([&] { ft::models::quantize_model(*quantized, {.group_size = 32, .bits = 4}); },
               "is already quantized");
  add_random_lora(*model);
  expect_error([&] { ft::models::quantize_model(*model, {.group_size = 32, .bits = 4}); },
               "carries an adapter");
}

TEST(QuantizeModel, TrainingChecks) {
  auto float_config = ft::io::read_config(kLlama);
  auto quantized_config = ft::io::read_config(kQuantized / "llama_q4_g32");
  using ft::models::check_quantized_training;
  check_quantized_training(float_config, 4, 64, false);
  check_quantized_training(float_config, 0, 64, true);
  check_quantized_training(quantized_config, 0, 64, false);
  expect_error([&] { check_quantized_training(float_config, 7, 64, false); },
               "quantize bits must be 0 (off), 2, 3, 4, 5, 6 or 8, got 7");
  expect_error([&] { check_quantized_training(float_config, -4, 64, false); }, "got -4");
  expect_error([&] { check_quantized_training(float_config, 4, 100, false); },
               "quantize group size must be 32, 64 or 128, got 100");
  expect_error([&] { check_quantized_training(float_config, 4, 64, true); },
               "full fine-tuning needs a floating-point model: quantize bits were given");
  expect_error([&] { check_quantized_training(quantized_config, 0, 64, true); },
               "full fine-tuning needs a floating-point model: the model is quantized");
  expect_error([&] { check_quantized_training(quantized_config, 4, 64, false); },
               "the model is quantized already");
}

// A copy of the mlx-lm folder whose config.json the test edits.
class QuantizedScratch {
 public:
  QuantizedScratch() : dir_(temp("scratch")) {
    fs::copy(kQuantized / "llama_q4_g32", dir_, fs::copy_options::recursive);
  }
  ~QuantizedScratch() { fs::remove_all(dir_); }
  json config() const { return read_json(dir_ / "config.json"); }
  void write_config(const json& value) const { std::ofstream(dir_ / "config.json") << value; }
  std::string load_error() const {
    try {
      ft::models::load_model(dir_);
    } catch (const ft::Error& e) {
      return e.what();
    }
    return "";
  }

 private:
  fs::path dir_;
};

TEST(QuantizedLoad, ErrorsListEveryProblem) {
  QuantizedScratch scratch;
  json config = scratch.config();

  // Quantized weights without any quantization entry: one error naming each module.
  json no_entry = config;
  no_entry.erase("quantization");
  no_entry.erase("quantization_config");
  scratch.write_config(no_entry);
  std::string error = scratch.load_error();
  EXPECT_NE(error.find("14 problems with quantized weights"), std::string::npos) << error;
  EXPECT_NE(error.find("'lm_head' has quantized weights but config.json has no "
                       "\"quantization\""),
            std::string::npos)
      << error;

  // Only mlx-lm's duplicate "quantization_config" is enough.
  json duplicate_only = config;
  duplicate_only.erase("quantization");
  scratch.write_config(duplicate_only);
  EXPECT_EQ(scratch.load_error(), "");

  // A module marked false whose weights are quantized.
  json marked_false = config;
  marked_false["quantization"]["model.layers.1.self_attn.k_proj"] = false;
  scratch.write_config(marked_false);
  error = scratch.load_error();
  EXPECT_NE(error.find("'model.layers.1.self_attn.k_proj' has quantized weights but "
                       "config.json's \"quantization\" marks it false"),
            std::string::npos)
      << error;

  // Bits that do not match the packed shapes: the strict load lists every tensor.
  json wrong_bits = config;
  wrong_bits["quantization"]["bits"] = 8;
  scratch.write_config(wrong_bits);
  error = scratch.load_error();
  EXPECT_NE(error.find("14 problems loading parameters"), std::string::npos) << error;
  EXPECT_NE(error.find("'lm_head.weight' has shape (128, 4), expected (128, 8)"), std::string::npos)
      << error;

  // A per-module group size that does not divide the module's input.
  json bad_group = config;
  bad_group["quantization"]["model.layers.0.self_attn.q_proj"] = {{"group_size", 64}, {"bits", 4}};
  scratch.write_config(bad_group);
  error = scratch.load_error();
  EXPECT_NE(error.find("'model.layers.0.self_attn.q_proj': group_size 64 does not divide the "
                       "quantized dimension 32"),
            std::string::npos)
      << error;
}

TEST(Qlora, TrainsOnlyTheAdaptersAndLowersTheLoss) {
  auto model = quantized_llama();
  ft::nn::LoraConfig lora;
  lora.rank = 4;
  lora.alpha = 8.0f;
  lora.target_modules = {"q_proj",    "k_proj",  "v_proj",   "o_proj",
                         "gate_proj", "up_proj", "down_proj"};
  auto adapted = ft::nn::apply_lora(*model, lora);
  EXPECT_EQ(adapted.size(), 14u);
  ft::ParamMap trainable = model->trainable_parameters();
  ASSERT_EQ(trainable.size(), 2 * adapted.size());
  for (const auto& [name, value] : trainable)
    EXPECT_TRUE(name.ends_with(".lora_A") || name.ends_with(".lora_B")) << name;
  expect_sgd_trains_only_the_adapters(*model);
}

TEST(Qlora, FuseIntoTheQuantizedBase) {
  auto model = quantized_llama();
  add_random_lora(*model);
  model->eval();
  mx::array adapted = (*model)(fixed_ids());
  auto q_before = std::dynamic_pointer_cast<ft::nn::LoRALinear>(
      model->find_module("model.layers.0.self_attn.q_proj"));
  ASSERT_NE(q_before, nullptr);
  mx::array merged = q_before->base_weight() + q_before->delta_weight();  // (out, in)

  fs::path base_dir = temp("fuse_base");
  fs::path adapter_dir = temp("fuse_adapter");
  save_quantized(*quantized_llama(), {.group_size = 32, .bits = 4}, base_dir);
  ft::nn::LoraConfig lora;
  lora.rank = 4;
  lora.alpha = 8.0f;
  ft::io::save_peft_adapter(*model, lora, base_dir.string(), adapter_dir);

  fs::path fused_dir = temp("fused");
  ft::models::fuse_model_folder(base_dir, adapter_dir, fused_dir);
  auto fused = ft::models::load_model(fused_dir);
  EXPECT_EQ(read_json(fused_dir / "config.json")["quantization"]["bits"], 4);
  // The adapted layer, re-quantized: exactly mx::quantize of W + s B A; the others as
  // they were.
  ft::ParamMap fused_params = fused->parameters();
  auto packed = mx::quantize(merged, 32, 4);
  EXPECT_TRUE(identical(fused_params.at("model.layers.0.self_attn.q_proj.weight"), packed[0]));
  EXPECT_TRUE(identical(fused_params.at("model.layers.0.self_attn.q_proj.scales"), packed[1]));
  ft::ParamMap base_params = ft::io::load_weights(base_dir);
  EXPECT_TRUE(identical(fused_params.at("model.layers.0.self_attn.k_proj.weight"),
                        base_params.at("model.layers.0.self_attn.k_proj.weight")));
  EXPECT_TRUE(identical(fused_params.at("lm_head.scales"), base_params.at("lm_head.scales")));
  // Re-quantizing moves the outputs by about what quantizing the base did.
  auto float_model = ft::models::load_model(kLlama);
  float quantization_error =
      relative_error((*quantized_llama())(fixed_ids()), (*float_model)(fixed_ids()));
  EXPECT_LT(relative_error((*fused)(fixed_ids()), adapted), 2 * quantization_error);

  // Dequantized: the merged layers are W + s B A in floats, the same function.
  fs::path dequantized_dir = temp("fused_float");
  ft::models::FuseOptions dequantize;
  dequantize.dequantize = true;
  ft::models::fuse_model_folder(base_dir, adapter_dir, dequantized_dir, dequantize);
  json config = read_json(dequantized_dir / "config.json");
  EXPECT_FALSE(config.contains("quantization"));
  EXPECT_FALSE(config.contains("quantization_config"));
  auto dequantized = ft::models::load_model(dequantized_dir);
  for (const auto& [path, module] : dequantized->named_modules())
    EXPECT_EQ(module->type_name().find("Quantized"), std::string::npos) << path;
  EXPECT_LT(relative_error((*dequantized)(fixed_ids()), adapted),
            ft::testing::tf32_tolerance(1e-5f));

  for (const auto& dir : {base_dir, adapter_dir, fused_dir, dequantized_dir}) fs::remove_all(dir);
}

// Mixtral's stacked experts: gate_up_proj (in 32) quantized and multiplied through
// mx::gather_qmm, down_proj (in 48) left in floats with groups of 32.
namespace {

const fs::path kMixtral = kGolden / "models" / "mixtral";
const std::string kGateUp = "model.layers.0.mlp.experts.gate_up_proj";
const std::string kDown = "model.layers.0.mlp.experts.down_proj";

std::unique_ptr<ft::models::CausalLM> quantized_mixtral() {
  auto model = ft::models::load_model(kMixtral);
  ft::models::quantize_model(*model, {.group_size = 32, .bits = 4});
  return model;
}

void save_quantized_mixtral(const ft::models::CausalLM& model, const fs::path& out) {
  json config = ft::io::read_config(kMixtral).json();
  ft::models::set_quantization_config(config, ft::io::QuantSpec{.group_size = 32, .bits = 4});
  ft::io::save_model_folder(model.parameters(), config, out);
}

}  // namespace

TEST(QuantizedExperts, MlxLmsQuantizedMixtralLoadsAndGivesItsLogits) {
  auto model = ft::models::load_model(kQuantized / "mixtral_q4_g32");
  model->eval();
  ft::ParamMap expected =
      ft::ParamMap::load_safetensors((kQuantized / "mixtral_q4_g32_expected.safetensors").string());
  EXPECT_LT(relative_error((*model)(expected.at("ids")), expected.at("logits")),
            ft::testing::tf32_tolerance(1e-4f));
  ft::ParamMap params = model->parameters();
  EXPECT_EQ(params.at(kGateUp).dtype(), mx::uint32);
  EXPECT_EQ(params.at(kGateUp + "_scales").shape(), (mx::Shape{4, 96, 1}));
  EXPECT_EQ(params.at(kDown).dtype(), mx::float32);
  EXPECT_FALSE(params.contains(kDown + "_scales"));
  EXPECT_EQ(type_at(*model, "model.layers.1.mlp.gate"), "QuantizedLinear");
}

TEST(QuantizedExperts, QuantizeEqualsMlxLmsAndSavesAndReloads) {
  ft::testing::OnCpu cpu;  // the float experts, see OnCpu
  auto model = ft::models::load_model(kMixtral);
  mx::array float_logits = (*model)(fixed_ids());
  auto paths = ft::models::quantize_model(*model, {.group_size = 32, .bits = 4});
  EXPECT_TRUE(std::find(paths.begin(), paths.end(), kGateUp) != paths.end());
  EXPECT_TRUE(std::find(paths.begin(), paths.end(), kDown) == paths.end());
  // The same tensors, bit for bit, as mlx-lm's quantization of the same model (its
  // gate and up halves stacked as ft keeps them).
  ft::ParamMap ours = model->parameters();
  auto mlx_lm = ft::models::load_model(kQuantized / "mixtral_q4_g32");
  ft::ParamMap theirs = mlx_lm->parameters();
  ASSERT_EQ(sorted(ours.names()), sorted(theirs.names()));
  for (const auto& [name, value] : theirs) EXPECT_TRUE(identical(ours.at(name), value)) << name;

  model->eval();
  mx::array quantized = (*model)(fixed_ids());
  // 4 bits move the logits (and some routing choices) of a tiny random model a lot.
  float error = relative_error(quantized, float_logits);
  EXPECT_GT(error, 1e-4f);
  EXPECT_LT(error, 1.0f);

  fs::path out = temp("mixtral");
  save_quantized_mixtral(*model, out);
  auto reloaded = ft::models::load_model(out);
  EXPECT_TRUE(identical((*reloaded)(fixed_ids()), quantized));
  // Without config.json's quantization entry the packed experts are refused by name.
  json stripped = read_json(out / "config.json");
  stripped.erase("quantization");
  stripped.erase("quantization_config");
  std::ofstream(out / "config.json") << stripped.dump();
  expect_error([&] { ft::models::load_model(out); },
               "'" + kGateUp + "' has quantized weights but config.json has no \"quantization\"");
  fs::remove_all(out);

  // The composite: the same model with every weight dequantized and multiplied in floats.
  auto dequantized = ft::models::dequantize_model(*model);
  EXPECT_TRUE(std::find(dequantized.begin(), dequantized.end(), kGateUp) != dequantized.end());
  EXPECT_FALSE(model->parameters().contains(kGateUp + "_scales"));
  EXPECT_LT(relative_error((*model)(fixed_ids()), quantized), ft::testing::tf32_tolerance(1e-5f));
}

TEST(QuantizedExperts, QloraTrainsExpertAdaptersOverTheQuantizedExperts) {
  auto model = quantized_mixtral();
  ft::nn::LoraConfig lora;
  lora.rank = 2;
  lora.alpha = 4.0f;
  lora.target_modules = {"q_proj", "v_proj", "gate_up_proj", "down_proj"};
  auto adapted = ft::nn::apply_lora(*model, lora);
  EXPECT_TRUE(std::find(adapted.begin(), adapted.end(), kGateUp) != adapted.end());
  ft::ParamMap trainable = model->trainable_parameters();
  ASSERT_EQ(trainable.size(), 2 * adapted.size());
  for (const auto& [name, value] : trainable)
    EXPECT_TRUE(name.ends_with(".lora_A") || name.ends_with(".lora_B")) << name;
  // The experts' adapters get gradients through the quantized product (B first: A's
  // gradient is zero while B is).
  ft::ParamMap first_grads = expect_sgd_trains_only_the_adapters(*model);
  EXPECT_GT(mx::max(mx::abs(first_grads.at(kGateUp + ".lora_B"))).item<float>(), 0.0f);
}

TEST(QuantizedExperts, FuseIntoTheQuantizedExperts) {
  ft::testing::OnCpu cpu;  // the float experts, see OnCpu
  auto model = quantized_mixtral();
  ft::nn::LoraConfig lora;
  lora.rank = 2;
  lora.alpha = 4.0f;
  lora.target_modules = {"gate_up_proj", "down_proj"};
  lora.seed = 5;
  ft::nn::apply_lora(*model, lora);
  ft::ParamMap random;
  int i = 0;
  for (const auto& [name, value] : model->trainable_parameters())
    random.set(name, mx::random::normal(value.shape(), value.dtype(), 0.0f, 0.3f,
                                        mx::random::key(200 + i++)));
  model->update(random);
  model->eval();
  mx::array adapted = (*model)(fixed_ids());
  auto experts = std::dynamic_pointer_cast<ft::nn::ExpertWeights>(
      model->find_module("model.layers.0.mlp.experts"));
  ASSERT_NE(experts, nullptr);
  mx::array merged = experts->stacked("gate_up_proj").dequantized() +
                     experts->adapter("gate_up_proj")->delta_weight();

  fs::path base_dir = temp("moe_base"), adapter_dir = temp("moe_adapter"),
           fused_dir = temp("moe_fused"), float_dir = temp("moe_fused_float");
  save_quantized_mixtral(*quantized_mixtral(), base_dir);
  ft::io::save_peft_adapter(*model, lora, base_dir.string(), adapter_dir);
  ft::models::fuse_model_folder(base_dir, adapter_dir, fused_dir);
  ft::ParamMap fused = ft::models::load_model(fused_dir)->parameters();
  // The adapted stack re-quantized: exactly mx::quantize of W + s B A.
  auto packed = mx::quantize(merged, 32, 4);
  EXPECT_TRUE(identical(fused.at(kGateUp), packed[0]));
  EXPECT_TRUE(identical(fused.at(kGateUp + "_scales"), packed[1]));
  EXPECT_EQ(fused.at(kDown).dtype(), mx::float32);
  EXPECT_LT(relative_error((*ft::models::load_model(fused_dir))(fixed_ids()), adapted), 0.5f);

  ft::models::FuseOptions dequantize;
  dequantize.dequantize = true;
  ft::models::fuse_model_folder(base_dir, adapter_dir, float_dir, dequantize);
  auto float_model = ft::models::load_model(float_dir);
  EXPECT_FALSE(float_model->parameters().contains(kGateUp + "_scales"));
  EXPECT_LT(relative_error((*float_model)(fixed_ids()), adapted),
            ft::testing::tf32_tolerance(1e-5f));
  for (const auto& dir : {base_dir, adapter_dir, fused_dir, float_dir}) fs::remove_all(dir);
}
