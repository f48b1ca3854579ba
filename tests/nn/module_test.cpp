#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>

#include <mlx/ops.h>
#include <mlx/random.h>

#include "ft/core/error.h"
#include "ft/nn/linear.h"
#include "ft/nn/module.h"
#include "ft/nn/norm.h"
#include "nn_test_util.h"

namespace mx = mlx::core;
using ft::nn::Layer;
using ft::nn::Linear;
using ft::nn::Module;
using ft::nn::ModuleList;
using ft_test::max_abs_diff;

namespace {

class Block : public Module {
 public:
  explicit Block(uint64_t seed) {
    fc1_ = std::make_shared<Linear>(4, 8, true, mx::random::key(seed));
    fc2_ = std::make_shared<Linear>(8, 4, false, mx::random::key(seed + 100));
    register_module("fc1", &fc1_);
    register_module("fc2", &fc2_);
  }
  std::string type_name() const override { return "Block"; }
  int mode_changes = 0;
  std::shared_ptr<Layer> fc1_;   // a slot any Layer fits
  std::shared_ptr<Linear> fc2_;  // a slot only a Linear fits

 protected:
  void on_mode_change() override { ++mode_changes; }
};

class Net : public Module {
 public:
  Net() : scale_(mx::ones({4})) {
    register_parameter("scale", &scale_);
    layers_ = std::make_shared<ModuleList<Block>>();
    layers_->push_back(std::make_shared<Block>(1));
    layers_->push_back(std::make_shared<Block>(2));
    register_module("layers", &layers_);
    head_ = std::make_shared<Linear>(4, 3, true, mx::random::key(9));
    register_module("head", &head_);
  }
  mx::array scale_;  // (4,)
  std::shared_ptr<ModuleList<Block>> layers_;
  std::shared_ptr<Linear> head_;
};

std::vector<std::string> names_of(const ft::ParamMap& map) {
  return map.names();
}

}  // namespace

TEST(Module, ParametersInRegistrationOrder) {
  Net net;
  std::vector<std::string> expected = {"scale",
                                       "layers.0.fc1.weight",
                                       "layers.0.fc1.bias",
                                       "layers.0.fc2.weight",
                                       "layers.1.fc1.weight",
                                       "layers.1.fc1.bias",
                                       "layers.1.fc2.weight",
                                       "head.weight",
                                       "head.bias"};
  EXPECT_EQ(names_of(net.parameters()), expected);
  EXPECT_EQ(net.parameters().at("layers.1.fc2.weight").shape(), (mx::Shape{4, 8}));
  // 4 + 2 * (32 + 8 + 32) + 12 + 3
  EXPECT_EQ(net.num_parameters(), 4u + 2u * 72u + 15u);
  std::vector<std::string> modules;
  for (auto& [path, module] : net.named_modules()) modules.push_back(path);
  std::vector<std::string> expected_modules = {
      "",         "layers",       "layers.0",     "layers.0.fc1", "layers.0.fc2",
      "layers.1", "layers.1.fc1", "layers.1.fc2", "head"};
  EXPECT_EQ(modules, expected_modules);
}

TEST(Module, FreezeAndUnfreezeByRegex) {
  Net net;
  EXPECT_EQ(net.num_trainable_parameters(), net.num_parameters());
  net.freeze();
  EXPECT_TRUE(net.trainable_parameters().empty());
  EXPECT_EQ(net.num_trainable_parameters(), 0u);

  net.unfreeze("fc1");
  std::vector<std::string> expected = {"layers.0.fc1.weight", "layers.0.fc1.bias",
                                       "layers.1.fc1.weight", "layers.1.fc1.bias"};
  EXPECT_EQ(names_of(net.trainable_parameters()), expected);
  EXPECT_EQ(net.num_trainable_parameters(), 2u * 40u);

  net.freeze("bias$");
  expected = {"layers.0.fc1.weight", "layers.1.fc1.weight"};
  EXPECT_EQ(names_of(net.trainable_parameters()), expected);
  EXPECT_TRUE(net.is_frozen("layers.0.fc1.bias"));
  EXPECT_FALSE(net.is_frozen("layers.1.fc1.weight"));

  // The regex sees full dotted names: "^layers\.1\." touches only the second block.
  net.unfreeze();
  net.freeze("^layers\\.1\\.");
  EXPECT_EQ(net.num_trainable_parameters(), 4u + 72u + 15u);

  EXPECT_FT_ERROR(net.freeze("("), "[module] regex '(' does not compile");
  EXPECT_FT_ERROR(net.is_frozen("layers.7.fc1.weight"), "no parameter named");
}

TEST(Module, LoadListsEveryProblemInOneError) {
  Net net;
  auto before = net.parameters();
  auto values = net.parameters();
  values.erase("head.bias");                                           // missing
  values.set("head.extra", mx::zeros({2}));                            // unexpected
  values.set("layers.0.fc1.weight", mx::zeros({8, 5}));                // wrong shape
  values.set("layers.1.fc2.weight", mx::zeros({4, 8}, mx::bfloat16));  // wrong dtype
  try {
    net.load(values);
    FAIL() << "load accepted bad values";
  } catch (const ft::Error& e) {
    std::string what = e.what();
    EXPECT_NE(what.find("4 problems"), std::string::npos) << what;
    EXPECT_NE(what.find("missing 'head.bias'"), std::string::npos) << what;
    EXPECT_NE(what.find("unexpected 'head.extra'"), std::string::npos) << what;
    EXPECT_NE(what.find("'layers.0.fc1.weight' has shape (8, 5), expected (8, 4)"),
              std::string::npos)
        << what;
    EXPECT_NE(what.find("'layers.1.fc2.weight' has dtype"), std::string::npos) << what;
  }
  // A failed load changes nothing.
  EXPECT_EQ(max_abs_diff(net.parameters().at("head.weight"), before.at("head.weight")), 0.0f);

  // Non-strict: a subset loads and unknown names are ignored, but shapes still count.
  ft::ParamMap subset{{"head.bias", mx::full({3}, 2.5f)}, {"nowhere.weight", mx::zeros({1})}};
  net.load(subset, /*strict=*/false);
  EXPECT_EQ(max_abs_diff(net.parameters().at("head.bias"), mx::full({3}, 2.5f)), 0.0f);
  EXPECT_FT_ERROR(net.load(ft::ParamMap{{"head.bias", mx::zeros({4})}}, false),
                  "1 problem loading");
}

TEST(Module, UpdateReplacesValuesAndRejectsUnknownNames) {
  Net net;
  net.update(ft::ParamMap{{"scale", mx::full({4}, 3.0f)}});
  EXPECT_EQ(max_abs_diff(net.scale_, mx::full({4}, 3.0f)), 0.0f);
  EXPECT_FT_ERROR(net.update(ft::ParamMap{{"scales", mx::zeros({4})}}),
                  "no parameter named 'scales'");
}

TEST(Module, SafetensorsRoundTrip) {
  Net a, b;
  b.update(ft::ParamMap{{"scale", mx::full({4}, -1.0f)}});
  auto path = (std::filesystem::temp_directory_path() / "ft_module_test.safetensors").string();
  a.save_safetensors(path);
  b.load_safetensors(path);
  for (const auto& [name, value] : a.parameters())
    EXPECT_EQ(max_abs_diff(value, b.parameters().at(name)), 0.0f) << name;
  std::remove(path.c_str());
}

TEST(Module, ReplaceModuleChecksTheSlotType) {
  Net net;
  auto replacement = std::make_shared<Linear>(mx::ones({8, 4}));
  net.replace_module("layers.0.fc1", replacement);
  EXPECT_EQ(net.find_module("layers.0.fc1"), replacement);
  // The new module's parameters show under the old names; the bias is gone.
  EXPECT_FALSE(net.parameters().contains("layers.0.fc1.bias"));
  EXPECT_EQ(max_abs_diff(net.parameters().at("layers.0.fc1.weight"), mx::ones({8, 4})), 0.0f);

  // A Layer slot takes any Layer; a Linear slot only a Linear.
  net.replace_module("layers.0.fc1", std::make_shared<ft::nn::RMSNorm>(4));
  EXPECT_FT_ERROR(net.replace_module("layers.0.fc2", std::make_shared<ft::nn::RMSNorm>(8)),
                  "a RMSNorm cannot take the place of 'fc2'");
  EXPECT_FT_ERROR(net.replace_module("layers.5.fc1", replacement), "no module at 'layers.5'");
  EXPECT_FT_ERROR(net.replace_module("layers.0.fc9", replacement), "no module at 'layers.0.fc9'");
  EXPECT_EQ(net.find_module("layers.0.nothing"), nullptr);
  EXPECT_FT_ERROR(net.replace_module("head", nullptr), "cannot put a null module at 'head'");
}

TEST(Module, TrainAndEvalReachTheWholeTree) {
  Net net;
  net.eval();
  for (auto& [path, module] : net.named_modules()) EXPECT_FALSE(module->training()) << path;
  EXPECT_EQ((*net.layers_)[0].mode_changes, 1);
  net.eval();  // no change, no callback
  EXPECT_EQ((*net.layers_)[1].mode_changes, 1);
  net.train();
  for (auto& [path, module] : net.named_modules()) EXPECT_TRUE(module->training()) << path;
  EXPECT_EQ((*net.layers_)[1].mode_changes, 2);

  // A module put into an eval-mode tree takes the tree's mode.
  net.eval();
  auto fresh = std::make_shared<Linear>(mx::ones({8, 4}));
  ASSERT_TRUE(fresh->training());
  net.replace_module("layers.1.fc1", fresh);
  EXPECT_FALSE(fresh->training());
}

TEST(Module, CastLeavesIntegersAlone) {
  Net net;
  net.cast(mx::bfloat16);
  for (const auto& [name, value] : net.parameters()) EXPECT_EQ(value.dtype(), mx::bfloat16) << name;
}

TEST(Linear, ForwardOnBatchedInputEqualsMatmul) {
  Linear layer(6, 5, true, mx::random::key(3));
  auto x = ft_test::randn({2, 3, 6}, 4);
  auto expected = mx::add(mx::matmul(x, mx::transpose(layer.weight())), *layer.bias());
  EXPECT_LT(max_abs_diff(layer(x), expected), 1e-5f);
  EXPECT_FT_ERROR(layer(ft_test::randn({2, 5}, 1)), "input's last dimension is 5, expected 6");
  EXPECT_FT_ERROR(Linear(mx::ones({3, 4}), mx::ones({4})), "bias must have shape (3,)");
}
