// ft against tiny random models made by Hugging Face transformers
// (tests/golden/make_model_fixtures.py): logits, loss and gradients.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include <mlx/ops.h>
#include <mlx/transforms.h>

#include "ft/core/param_map.h"
#include "ft/models/registry.h"
#include "ft/nn/lora.h"
#include "ft/train/losses.h"

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

class GoldenModel : public ::testing::TestWithParam<std::string> {};

TEST_P(GoldenModel, LogitsLossAndGradientsMatchTransformers) {
  const std::string name = GetParam();
  auto model = ft::models::load_model(kModels / name, mx::float32);
  model->eval();
  ft::ParamMap expected =
      ft::ParamMap::load_safetensors((kModels / (name + "_expected.safetensors")).string());
  mx::array ids = expected.at("ids");

  mx::array logits = (*model)(ids);
  EXPECT_LT(relative_error(logits, expected.at("logits")), 1e-4f) << name;

  // Gradients of the loss for the weights the fixture recorded ("grad.<name>").
  std::vector<std::string> names;
  for (const auto& [key, value] : expected)
    if (key.starts_with("grad.")) names.push_back(key.substr(5));
  ASSERT_GE(names.size(), 2u);
  ft::ParamMap params = model->parameters();
  std::vector<mx::array> inputs;
  for (const auto& n : names) inputs.push_back(params.at(n));
  auto loss_fn = [&](const std::vector<mx::array>& values) {
    model->update(ft::ParamMap::zip(names, values));
    return std::vector<mx::array>{shifted_loss((*model)(ids), ids)};
  };
  auto [loss, grads] = mx::value_and_grad(loss_fn, [&] {
    std::vector<int> all(names.size());
    for (size_t i = 0; i < all.size(); ++i) all[i] = static_cast<int>(i);
    return all;
  }())(inputs);
  model->update(ft::ParamMap::zip(names, inputs));

  float expected_loss = expected.at("loss").item<float>();
  EXPECT_NEAR(loss[0].item<float>(), expected_loss, 1e-5f * std::abs(expected_loss)) << name;
  for (size_t i = 0; i < names.size(); ++i)
    EXPECT_LT(relative_error(grads[i], expected.at("grad." + names[i])), 1e-4f)
        << name << " " << names[i];
}

// PEFT LoRA (rank 4, alpha 8) on every q_proj and v_proj with the fixture's adapters:
// logits, loss and the adapters' gradients.
TEST_P(GoldenModel, LoraMatchesPeft) {
  const std::string name = GetParam();
  auto model = ft::models::load_model(kModels / name, mx::float32);
  model->eval();
  ft::ParamMap expected =
      ft::ParamMap::load_safetensors((kModels / (name + "_expected.safetensors")).string());
  mx::array ids = expected.at("ids");

  ft::nn::LoraConfig lora;
  lora.rank = 4;
  lora.alpha = 8.0f;
  lora.target_modules = {"q_proj", "v_proj"};
  std::vector<std::string> adapted = ft::nn::apply_lora(*model, lora);
  ASSERT_EQ(adapted.size(), 4u);
  ft::ParamMap adapters;
  for (const auto& [key, value] : expected)
    if (key.starts_with("lora.")) adapters.set(key.substr(5), value);
  ASSERT_EQ(adapters.size(), 8u);
  model->update(adapters);

  std::vector<std::string> names = model->trainable_parameters().names();
  ASSERT_EQ(names, adapters.names());
  EXPECT_LT(relative_error((*model)(ids), expected.at("lora_logits")), 1e-4f) << name;

  std::vector<mx::array> inputs = adapters.arrays();
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

INSTANTIATE_TEST_SUITE_P(Architectures, GoldenModel,
                         ::testing::Values("llama", "llama3_tied", "llama_linear", "llama_dynamic",
                                           "mistral", "qwen2", "qwen3"));

}  // namespace

namespace {

// The fixtures exercise what they are meant to: without the feature the logits move
// well past the tolerance (so a model that ignored it could not pass).
ft::models::Config config_without(const std::string& name,
                                       void (*strip)(ft::models::Config&)) {
  ft::models::Config c = ft::models::from_hf_config(ft::io::read_config(kModels / name));
  strip(c);
  return c;
}

float error_without(const std::string& name, void (*strip)(ft::models::Config&),
                    int length = 12) {
  ft::ParamMap expected =
      ft::ParamMap::load_safetensors((kModels / (name + "_expected.safetensors")).string());
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
