#include <gtest/gtest.h>

#include <mlx/ops.h>
#include <mlx/random.h>

#include "ft/core/error.h"
#include "ft/nn/lora.h"
#include "nn_test_util.h"

namespace mx = mlx::core;
using ft::nn::Layer;
using ft::nn::Linear;
using ft::nn::LoraConfig;
using ft::nn::Module;
using ft_test::max_abs_diff;
using ft_test::randn;

namespace {

// A toy decoder: model.layers.<i>.{q_proj,k_proj,v_proj} in Layer slots, an o_proj in a
// Linear-typed slot (which cannot take a wrapper), and an lm_head outside the layers.
class Block : public Module {
 public:
  explicit Block(uint64_t seed) {
    q_proj_ = std::make_shared<Linear>(8, 8, false, mx::random::key(seed));
    k_proj_ = std::make_shared<Linear>(8, 8, false, mx::random::key(seed + 1));
    v_proj_ = std::make_shared<Linear>(8, 8, true, mx::random::key(seed + 2));
    o_proj_ = std::make_shared<Linear>(8, 8, false, mx::random::key(seed + 3));
    register_module("q_proj", &q_proj_);
    register_module("k_proj", &k_proj_);
    register_module("v_proj", &v_proj_);
    register_module("o_proj", &o_proj_);
  }
  mx::array forward(const mx::array& x) {
    auto h = mx::add(mx::add((*q_proj_)(x), (*k_proj_)(x)), (*v_proj_)(x));
    return mx::add(x, (*o_proj_)(mx::tanh(h)));
  }
  std::shared_ptr<Layer> q_proj_, k_proj_, v_proj_;
  std::shared_ptr<Linear> o_proj_;
};

class Body : public Module {
 public:
  Body() {
    layers_ = std::make_shared<ft::nn::ModuleList<Block>>();
    for (int i = 0; i < 4; ++i) layers_->push_back(std::make_shared<Block>(10 * i + 1));
    register_module("layers", &layers_);
  }
  std::shared_ptr<ft::nn::ModuleList<Block>> layers_;
};

class Toy : public Module {
 public:
  Toy() {
    model_ = std::make_shared<Body>();
    lm_head_ = std::make_shared<Linear>(8, 5, false, mx::random::key(99));
    register_module("model", &model_);
    register_module("lm_head", &lm_head_);
  }
  mx::array operator()(mx::array x) {
    for (size_t i = 0; i < model_->layers_->size(); ++i) x = (*model_->layers_)[i].forward(x);
    return (*lm_head_)(x);
  }
  std::shared_ptr<Body> model_;
  std::shared_ptr<Layer> lm_head_;
};

LoraConfig config_for(std::vector<std::string> targets) {
  LoraConfig config;
  config.rank = 2;
  config.alpha = 4.0f;
  config.target_modules = std::move(targets);
  return config;
}

}  // namespace

TEST(ApplyLora, ReplacesTargetsInTheLastLayersAndFreezesTheRest) {
  Toy toy;
  auto names_before = toy.parameters().names();
  auto x = randn({3, 8}, 1);
  auto y_before = toy(x);

  auto config = config_for({"q_proj", "v_proj"});
  config.num_layers = 2;
  auto paths = ft::nn::apply_lora(toy, config);
  std::vector<std::string> expected = {"model.layers.2.q_proj", "model.layers.2.v_proj",
                                       "model.layers.3.q_proj", "model.layers.3.v_proj"};
  EXPECT_EQ(paths, expected);
  for (const auto& path : paths)
    EXPECT_EQ(toy.find_module(path)->type_name(), "LoRALinear") << path;
  EXPECT_EQ(toy.find_module("model.layers.1.q_proj")->type_name(), "Linear");

  // Base names are unchanged; the adapters add lora_A / lora_B after each base.
  auto names = toy.parameters().names();
  for (const auto& name : names_before) EXPECT_TRUE(toy.parameters().contains(name)) << name;
  EXPECT_EQ(names.size(), names_before.size() + 2 * paths.size());
  std::vector<std::string> trainable;
  for (const auto& path : paths) {
    trainable.push_back(path + ".lora_A");
    trainable.push_back(path + ".lora_B");
  }
  EXPECT_EQ(toy.trainable_parameters().names(), trainable);
  EXPECT_EQ(toy.num_trainable_parameters(), paths.size() * (2 * 8 + 8 * 2));

  // B = 0: the model computes what it did.
  EXPECT_EQ(max_abs_diff(toy(x), y_before), 0.0f);
}

TEST(ApplyLora, RegexDoraAndFuseBack) {
  Toy toy;
  auto x = randn({3, 8}, 1);
  auto names_before = toy.parameters().names();
  LoraConfig config;
  config.rank = 2;
  config.alpha = 2.0f;
  config.dora = true;
  config.target_regex = R"(layers\.[02]\.(k|v)_proj$)";
  auto paths = ft::nn::apply_lora(toy, config);
  EXPECT_EQ(paths, (std::vector<std::string>{"model.layers.0.k_proj", "model.layers.0.v_proj",
                                             "model.layers.2.k_proj", "model.layers.2.v_proj"}));
  EXPECT_EQ(toy.find_module(paths[0])->type_name(), "DoRALinear");
  EXPECT_TRUE(toy.trainable_parameters().contains("model.layers.2.v_proj.lora_magnitude"));

  // Give the adapters values, then fuse and compare.
  ft::ParamMap values;
  uint64_t seed = 50;
  for (const auto& [name, value] : toy.trainable_parameters())
    values.set(name, mx::add(value, randn(value.shape(), seed++, 0.2f)));
  toy.update(values);
  auto y = toy(x);
  EXPECT_EQ(ft::nn::fuse_lora(toy), paths);
  for (const auto& path : paths) EXPECT_EQ(toy.find_module(path)->type_name(), "Linear");
  EXPECT_EQ(toy.parameters().names(), names_before);
  EXPECT_LT(max_abs_diff(toy(x), y), 1e-5f);
  EXPECT_TRUE(ft::nn::fuse_lora(toy).empty());
}

namespace {

class QuantizedHolder : public Module {
 public:
  QuantizedHolder() {
    Linear dense(64, 16, true, mx::random::key(3));
    proj_ = ft::nn::QuantizedLinear::from_linear(dense, 64, 4);
    register_module("proj", &proj_);
  }
  std::shared_ptr<Layer> proj_;
};

}  // namespace

TEST(ApplyLora, QuantizedTargetsFuseToEitherForm) {
  for (bool dequantize : {false, true}) {
    QuantizedHolder holder;
    // The quantized layer's float bias is trainable on its own, frozen under LoRA.
    EXPECT_EQ(holder.trainable_parameters().names(), std::vector<std::string>{"proj.bias"});
    EXPECT_EQ(ft::nn::apply_lora(holder, config_for({"proj"})), std::vector<std::string>{"proj"});
    auto lora = std::dynamic_pointer_cast<ft::nn::LoRALinear>(holder.proj_);
    ASSERT_NE(lora, nullptr);
    EXPECT_TRUE(lora->quantized());
    EXPECT_EQ(holder.trainable_parameters().names(),
              (std::vector<std::string>{"proj.lora_A", "proj.lora_B"}));
    ft::nn::fuse_lora(holder, dequantize);
    EXPECT_EQ(holder.proj_->type_name(), dequantize ? "Linear" : "QuantizedLinear");
  }
}

TEST(ApplyLora, ErrorsLeaveTheModelAlone) {
  Toy toy;
  auto bad = config_for({"q_proj"});
  bad.rank = 0;
  EXPECT_FT_ERROR(ft::nn::apply_lora(toy, bad), "rank must be positive");
  bad = config_for({"q_proj"});
  bad.alpha = -1.0f;
  EXPECT_FT_ERROR(ft::nn::apply_lora(toy, bad), "alpha must be positive");
  bad = config_for({"q_proj"});
  bad.dropout = 1.0f;
  EXPECT_FT_ERROR(ft::nn::apply_lora(toy, bad), "dropout must be in [0, 1)");
  EXPECT_FT_ERROR(ft::nn::apply_lora(toy, config_for({"w_proj"})),
                  "no Linear or QuantizedLinear matches");
  EXPECT_FT_ERROR(ft::nn::apply_lora(toy, config_for({})), "give target_modules or target_regex");
  bad = config_for({});
  bad.target_regex = "(";
  EXPECT_FT_ERROR(ft::nn::apply_lora(toy, bad), "[lora] regex '(' does not compile");

  // o_proj sits in a Linear-typed slot: the error names it and the q_proj wrappers
  // placed before it are taken back out.
  EXPECT_FT_ERROR(ft::nn::apply_lora(toy, config_for({"q_proj", "o_proj"})),
                  "cannot take the place of 'o_proj'");
  for (auto& [path, module] : toy.named_modules())
    EXPECT_NE(module->type_name(), "LoRALinear") << path;
  EXPECT_EQ(toy.num_trainable_parameters(), toy.num_parameters());
}
