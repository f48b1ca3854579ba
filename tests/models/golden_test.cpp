// ft against tiny random models made by Hugging Face transformers
// (tests/golden/make_model_fixtures.py): logits, loss and gradients.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include <mlx/ops.h>
#include <mlx/transforms.h>

#include "ft/core/param_map.h"
#include "ft/models/registry.h"
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

INSTANTIATE_TEST_SUITE_P(Architectures, GoldenModel,
                         ::testing::Values("llama", "llama3_tied", "llama_linear", "llama_dynamic",
                                           "mistral", "qwen2", "qwen3"));

}  // namespace
