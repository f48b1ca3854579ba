// ft against tiny random models made by Hugging Face transformers, one row per family
// variant (tests/golden/make_model_fixtures.py, make_family_fixtures.py): logits, loss,
// weight gradients, LoRA against PEFT, and greedy generation through the cache against
// transformers' generate.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <regex>
#include <sstream>
#include <string>
#include <unordered_map>

#include <mlx/ops.h>
#include <mlx/transforms.h>

#include "ft/core/param_map.h"
#include "ft/generate/generate.h"
#include "ft/models/registry.h"
#include "ft/nn/lora.h"
#include "ft/train/causal_lm_task.h"
#include "ft/train/losses.h"
#include "tests/test_util.h"

namespace mx = mlx::core;
namespace fs = std::filesystem;

namespace {

const fs::path kModels = fs::path(FT_TEST_DATA) / "models";

// max |a - b| / max(max |b|, tiny): relative to the reference's scale, so entries
// near zero do not dominate.
float relative_error(const mx::array& actual, const mx::array& expected) {
  EXPECT_EQ(actual.shape(), expected.shape());
  mx::array diff = mx::max(mx::abs(mx::astype(actual, mx::float32) - expected));
  mx::array scale = mx::maximum(mx::max(mx::abs(expected)), mx::array(1e-12f));
  return (diff / scale).item<float>();
}

// HF's causal LM loss: predict ids[:, 1:] from logits[:, :-1], mean over tokens.
mx::array shifted_loss(const mx::array& logits, const mx::array& ids) {
  int length = logits.shape(1);
  mx::array head = mx::slice(logits, {0, 0, 0}, {logits.shape(0), length - 1, logits.shape(2)});
  mx::array targets = mx::slice(ids, {0, 1}, {ids.shape(0), length});
  return ft::train::cross_entropy(head, targets, {.reduction = ft::train::Reduction::mean});
}

// The file of a variant's expected outputs ("_expected" or "_generate"): its own, except the
// multimodal gemma3 folder's, which holds gemma3_text's weights as its language model and
// whose transformers outputs make_family_fixtures.py found equal to gemma3_text's.
fs::path fixture(const std::string& name, const std::string& kind) {
  return kModels / ((name == "gemma3" ? "gemma3_text" : name) + "_" + kind + ".safetensors");
}

// The fixture's LoRA targets (its metadata's lora_target_modules; q_proj and v_proj
// for the fixtures that predate it), and the names of the stacked expert parameters PEFT
// adapted through lora_target_parameters ("mlp.experts.gate_up_proj" -> "gate_up_proj"),
// which ft's target_modules match as a user would name them.
std::vector<std::string> lora_targets(const std::string& name) {
  std::unordered_map<std::string, std::string> metadata;
  ft::ParamMap::load_safetensors(fixture(name, "expected").string(), &metadata);
  auto it = metadata.find("lora_target_modules");
  if (it == metadata.end()) return {"q_proj", "v_proj"};
  std::vector<std::string> out;
  std::stringstream list(it->second);
  for (std::string item; std::getline(list, item, ',');) out.push_back(item);
  if (auto params = metadata.find("lora_target_parameters"); params != metadata.end()) {
    std::stringstream parameters(params->second);
    for (std::string item; std::getline(parameters, item, ',');)
      out.push_back(item.substr(item.rfind('.') + 1));
  }
  return out;
}

std::vector<int> ids_of(const mx::array& a) {
  mx::array flat = mx::astype(mx::flatten(a), mx::int32);
  mx::eval(flat);
  return std::vector<int>(flat.data<int32_t>(), flat.data<int32_t>() + flat.size());
}

// Where a checkpoint's tensor lives among ft's parameters: GPT2Model files lack the
// "transformer." prefix, and Mixtral's per-expert tensors are slices of the stacked ones.
struct Located {
  std::string name;
  std::function<mx::array(const mx::array&)> part = [](const mx::array& a) { return a; };
};

Located where(const std::string& name, const ft::ParamMap& params, int intermediate) {
  if (params.contains(name)) return {name};
  if (params.contains("transformer." + name)) return {"transformer." + name};
  static const std::regex expert(
      R"((model\.layers\.\d+\.)block_sparse_moe\.(gate\.weight|experts\.(\d+)\.(w[123])\.weight))");
  std::smatch m;
  if (!std::regex_match(name, m, expert)) return {name};
  const std::string layer = m[1];
  if (m[2] == "gate.weight") return {layer + "mlp.gate.weight"};
  int e = std::stoi(m[3]);
  const std::string w = m[4];
  if (w == "w2")
    return {layer + "mlp.experts.down_proj", [e](const mx::array& a) {
              return mx::squeeze(mx::slice(a, {e, 0, 0}, {e + 1, a.shape(1), a.shape(2)}), 0);
            }};
  int begin = w == "w1" ? 0 : intermediate;  // [gate | up] rows
  return {layer + "mlp.experts.gate_up_proj", [e, begin, intermediate](const mx::array& a) {
            return mx::squeeze(
                mx::slice(a, {e, begin, 0}, {e + 1, begin + intermediate, a.shape(2)}), 0);
          }};
}

class GoldenModel : public ::testing::TestWithParam<std::string> {};

TEST_P(GoldenModel, LogitsLossAndGradientsMatchTransformers) {
  const std::string name = GetParam();
  ft::testing::OnCpu cpu(name.starts_with("mixtral"));  // see OnCpu
  auto model = ft::models::load_model(kModels / name, mx::float32);
  model->eval();
  ft::ParamMap expected = ft::ParamMap::load_safetensors(fixture(name, "expected").string());
  mx::array ids = expected.at("ids");

  mx::array logits = (*model)(ids);
  EXPECT_LT(relative_error(logits, expected.at("logits")), 1e-4f) << name;

  // Gradients of the loss for the weights the fixture recorded ("grad.<name>"), under
  // the checkpoint's names (located among ft's parameters by where()).
  std::vector<std::string> recorded;
  for (const auto& [key, value] : expected)
    if (key.starts_with("grad.")) recorded.push_back(key.substr(5));
  ASSERT_GE(recorded.size(), 2u);
  ft::ParamMap params = model->parameters();
  std::vector<std::string> names;  // ft's parameters, each once
  for (const auto& r : recorded) {
    std::string n = where(r, params, model->config().intermediate_size).name;
    if (std::find(names.begin(), names.end(), n) == names.end()) names.push_back(n);
  }
  std::vector<mx::array> inputs;
  for (const auto& n : names) inputs.push_back(params.at(n));
  auto loss_fn = [&](const std::vector<mx::array>& values) {
    model->update(ft::ParamMap::zip(names, values));
    return std::vector<mx::array>{shifted_loss((*model)(ids), ids)};
  };
  std::vector<int> argnums(names.size());
  for (size_t i = 0; i < argnums.size(); ++i) argnums[i] = static_cast<int>(i);
  auto [loss, grads] = mx::value_and_grad(loss_fn, argnums)(inputs);
  model->update(ft::ParamMap::zip(names, inputs));
  ft::ParamMap grad_of = ft::ParamMap::zip(names, grads);

  float expected_loss = expected.at("loss").item<float>();
  EXPECT_NEAR(loss[0].item<float>(), expected_loss, 1e-5f * std::abs(expected_loss)) << name;
  for (const auto& r : recorded) {
    Located at = where(r, params, model->config().intermediate_size);
    EXPECT_LT(relative_error(at.part(grad_of.at(at.name)), expected.at("grad." + r)), 1e-4f)
        << name << " " << r;
  }
}

// PEFT LoRA (rank 4, alpha 8) on the fixture's targets (q_proj and v_proj, or its own
// list; Mixtral's stacked experts too) with the fixture's adapters: logits, loss and the
// adapters' gradients.
TEST_P(GoldenModel, LoraMatchesPeft) {
  const std::string name = GetParam();
  ft::testing::OnCpu cpu(name.starts_with("mixtral"));  // see OnCpu
  auto model = ft::models::load_model(kModels / name, mx::float32);
  model->eval();
  ft::ParamMap expected = ft::ParamMap::load_safetensors(fixture(name, "expected").string());
  mx::array ids = expected.at("ids");

  ft::nn::LoraConfig lora;
  lora.rank = 4;
  lora.alpha = 8.0f;
  lora.target_modules = lora_targets(name);
  std::vector<std::string> adapted = ft::nn::apply_lora(*model, lora);
  ft::ParamMap adapters;
  for (const auto& [key, value] : expected)
    if (key.starts_with("lora.")) adapters.set(key.substr(5), value);
  ASSERT_EQ(adapters.size(), 2 * adapted.size());
  model->update(adapters);

  std::vector<std::string> names = model->trainable_parameters().names();
  std::vector<std::string> sorted = names, fixture = adapters.names();
  std::sort(sorted.begin(), sorted.end());
  std::sort(fixture.begin(), fixture.end());
  ASSERT_EQ(sorted, fixture);
  EXPECT_LT(relative_error((*model)(ids), expected.at("lora_logits")), 1e-4f) << name;

  std::vector<mx::array> inputs;
  for (const auto& n : names) inputs.push_back(adapters.at(n));
  std::vector<int> argnums(names.size());
  for (size_t i = 0; i < argnums.size(); ++i) argnums[i] = static_cast<int>(i);
  auto loss_fn = [&](const std::vector<mx::array>& values) {
    model->update(ft::ParamMap::zip(names, values));
    return std::vector<mx::array>{shifted_loss((*model)(ids), ids)};
  };
  auto [loss, grads] = mx::value_and_grad(loss_fn, argnums)(inputs);
  model->update(adapters);

  float expected_loss = expected.at("lora_loss").item<float>();
  EXPECT_NEAR(loss[0].item<float>(), expected_loss, 1e-5f * std::abs(expected_loss)) << name;
  for (size_t i = 0; i < names.size(); ++i)
    EXPECT_LT(relative_error(grads[i], expected.at("lora_grad." + names[i])), 1e-4f)
        << name << " " << names[i];
}

// Greedy generation through the cache (ft::generate::generate, prefill then one token at
// a time) gives transformers' generate(do_sample=False) tokens.
TEST_P(GoldenModel, GreedyGenerationMatchesTransformers) {
  const std::string name = GetParam();
  ft::testing::OnCpu cpu(name.starts_with("mixtral"));  // see OnCpu
  auto model = ft::models::load_model(kModels / name, mx::float32);
  model->eval();
  ft::ParamMap expected = ft::ParamMap::load_safetensors(fixture(name, "generate").string());
  std::vector<int> prompt = ids_of(expected.at("prompt"));
  std::vector<int> want = ids_of(expected.at("generated"));
  ASSERT_GT(want.size(), prompt.size());
  ft::generate::GenerateOptions options;
  options.max_tokens = static_cast<int>(want.size() - prompt.size());
  options.prefill_chunk = 3;  // the prompt in two chunks: the cache across a prefill too
  options.cache_step = 4;     // and grown several times
  auto result = ft::generate::generate(*model, prompt, options,
                                       [](const std::vector<int>&) { return std::string(); });
  std::vector<int> got = prompt;
  got.insert(got.end(), result.ids.begin(), result.ids.end());
  EXPECT_EQ(got, want) << name;
}

INSTANTIATE_TEST_SUITE_P(Architectures, GoldenModel,
                         ::testing::Values("llama", "llama3_tied", "llama_linear", "llama_dynamic",
                                           "mistral", "qwen2", "qwen3", "gemma2", "gemma3_text",
                                           "gemma3", "phi", "phi_qk_layernorm", "phi3",
                                           "phi3_longrope", "gpt2", "gpt2_bare", "mixtral",
                                           "mixtral_legacy", "lfm2"));

}  // namespace

namespace {

// The fixtures exercise what they are meant to: without the feature the logits move
// well past the tolerance (so a model that ignored it could not pass).
ft::models::Config config_without(const std::string& name, void (*strip)(ft::models::Config&)) {
  ft::models::Config c = ft::models::from_hf_config(ft::io::read_config(kModels / name));
  strip(c);
  return c;
}

float error_without(const std::string& name, void (*strip)(ft::models::Config&), int length = 12) {
  ft::ParamMap expected = ft::ParamMap::load_safetensors(fixture(name, "expected").string());
  ft::Rng rng(0);
  auto built = ft::models::build_model(config_without(name, strip), rng);
  auto& model = *built;
  model.load(ft::io::load_weights(kModels / name));
  mx::array ids = mx::slice(expected.at("ids"), {0, 0}, {2, length});
  mx::array logits = expected.at("logits");
  logits = mx::slice(logits, {0, 0, 0}, {2, length, logits.shape(2)});
  return relative_error(model(ids), logits);
}

TEST(GoldenFixtures, EachFeatureChangesTheLogits) {
  using Type = ft::models::RopeScaling::Type;
  EXPECT_GT(error_without("mistral", [](auto& c) { c.sliding_window = 0; }), 1e-3f);
  EXPECT_GT(error_without("llama3_tied", [](auto& c) { c.rope_scaling.type = Type::none; }), 1e-3f);
  EXPECT_GT(error_without("llama_linear", [](auto& c) { c.rope_scaling.type = Type::none; }),
            1e-3f);
  EXPECT_GT(error_without("llama_dynamic", [](auto& c) { c.rope_scaling.type = Type::none; }),
            1e-3f);
}

// Dynamic NTK scaling leaves a sequence no longer than max_position_embeddings (8)
// with plain RoPE and rescales a longer one.
TEST(GoldenFixtures, DynamicRopeIsPlainWithinMaxPositions) {
  ft::models::Config dynamic =
      ft::models::from_hf_config(ft::io::read_config(kModels / "llama_dynamic"));
  ft::models::Config plain = dynamic;
  plain.rope_scaling.type = ft::models::RopeScaling::Type::none;
  ft::Rng rng_a(0), rng_b(0);
  auto a_model = ft::models::build_model(dynamic, rng_a);
  auto b_model = ft::models::build_model(plain, rng_b);
  auto &a = *a_model, &b = *b_model;
  ft::ParamMap weights = ft::io::load_weights(kModels / "llama_dynamic");
  a.load(weights);
  b.load(weights);
  mx::array ids = mx::reshape(mx::arange(16, mx::int32), {2, 8});
  EXPECT_TRUE(mx::array_equal(a(ids), b(ids)).item<bool>());
  mx::array longer = mx::reshape(mx::arange(18, mx::int32), {2, 9});
  EXPECT_FALSE(mx::allclose(a(longer), b(longer), 1e-4, 1e-4).item<bool>());
}

}  // namespace

namespace {

// Mixtral's router load-balancing loss (config.json's output_router_logits on): the
// model's auxiliary loss is transformers' aux_loss times router_aux_loss_coef, and the
// training loss (train::causal_lm_loss, summed over tokens) adds it once per token, so
// its mean is transformers' loss_with_aux; the router's gradient follows it.
TEST(GoldenFixtures, MixtralRouterLossMatchesTransformers) {
  ft::testing::OnCpu cpu;  // see OnCpu
  ft::io::ModelConfig file = ft::io::read_config(kModels / "mixtral_fused");
  nlohmann::json json = file.json();
  json["output_router_logits"] = true;
  ft::models::Config config = ft::models::from_hf_config(ft::io::ModelConfig(json, file.file()));
  ASSERT_FLOAT_EQ(config.router_aux_loss_coef, 0.02f);
  ft::Rng rng(0);
  auto model = ft::models::build_model(config, rng);
  model->load(ft::io::load_weights(kModels / "mixtral_fused"));
  model->eval();
  ft::ParamMap expected =
      ft::ParamMap::load_safetensors((kModels / "mixtral_fused_expected.safetensors").string());
  mx::array ids = expected.at("ids");

  model->hidden_states(ids);
  ASSERT_TRUE(model->auxiliary_loss().has_value());
  EXPECT_NEAR(model->auxiliary_loss()->item<float>() / 0.02f, expected.at("aux_loss").item<float>(),
              1e-5f);

  // The whole rows in, as transformers runs them (the router sees all 12 positions), and
  // each position's next id as its target, the last one ignored (-100).
  int length = ids.shape(1);
  mx::array targets = mx::concatenate(
      {mx::slice(ids, {0, 1}, {2, length}), mx::full({2, 1}, -100, ids.dtype())}, 1);
  ft::Batch batch{ids, targets};
  const std::string router = "model.layers.0.mlp.gate.weight";
  ft::ParamMap params = model->parameters();
  auto loss_fn = [&](const std::vector<mx::array>& values) {
    model->update(ft::ParamMap::zip({router}, values));
    ft::LossOutput out = ft::train::causal_lm_loss()(*model, batch, mx::array(0));
    return std::vector<mx::array>{out.loss_sum / mx::astype(out.tokens, mx::float32)};
  };
  auto [loss, grads] = mx::value_and_grad(loss_fn, std::vector<int>{0})({params.at(router)});
  float want = expected.at("loss_with_aux").item<float>();
  EXPECT_NEAR(loss[0].item<float>(), want, 1e-5f * want);
  EXPECT_LT(relative_error(grads[0], expected.at("grad_with_aux." + router)), 1e-4f);
}

}  // namespace
