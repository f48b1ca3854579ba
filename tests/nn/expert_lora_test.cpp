// LoRA on stacked expert parameters (ExpertLoRA, ExpertWeights): PEFT's layout against the
// hand formula, apply_lora's matching and freezing, gradients through the gathered
// products against a per-expert reference, and fuse_lora against the adapted forward.
#include <gtest/gtest.h>

#include <mlx/ops.h>
#include <mlx/random.h>
#include <mlx/transforms.h>

#include "ft/core/error.h"
#include "ft/nn/experts.h"
#include "ft/nn/lora.h"
#include "nn_test_util.h"

namespace mx = mlx::core;
using ft::nn::ExpertLoRA;
using ft::nn::LoraConfig;
using ft::nn::Module;
using ft::nn::StackedWeight;
using ft_test::max_abs;
using ft_test::max_abs_diff;
using ft_test::randn;

namespace {

constexpr int kExperts = 3, kIn = 4, kOut = 5, kRank = 2;

// Stacked weights like MoE's experts: "up" (E, out, in) and "down" (E, in, out), each
// token through one expert per row of indices.
class ToyExperts : public ft::nn::ExpertWeights {
 public:
  explicit ToyExperts(uint64_t seed) {
    add_stacked("up", StackedWeight::floats(randn({kExperts, kOut, kIn}, seed)));
    add_stacked("down", StackedWeight::floats(randn({kExperts, kIn, kOut}, seed + 1)));
  }
  // x (T, in), indices (T,) -> (T, in)
  mx::array operator()(const mx::array& x, const mx::array& indices) {
    auto rows = mx::expand_dims(x, -2);  // (T, 1, in)
    auto h = project("up", rows, indices);
    return mx::squeeze(project("down", mx::tanh(h), indices), -2);
  }
};

class ToyLayer : public Module {
 public:
  explicit ToyLayer(uint64_t seed) : experts(std::make_shared<ToyExperts>(seed)) {
    register_module("experts", &experts);
  }
  std::shared_ptr<ToyExperts> experts;
};

class ToyModel : public Module {
 public:
  ToyModel() : layers(std::make_shared<ft::nn::ModuleList<ToyLayer>>()) {
    for (int i = 0; i < 2; ++i) layers->push_back(std::make_shared<ToyLayer>(10 * i + 3));
    register_module("layers", &layers);
  }
  mx::array operator()(const mx::array& x, const mx::array& indices) {
    mx::array h = x;
    for (size_t i = 0; i < layers->size(); ++i) h = (*(*layers)[i].experts)(h, indices);
    return h;
  }
  std::shared_ptr<ft::nn::ModuleList<ToyLayer>> layers;
};

// Expert e's delta by PEFT's formula: s B[:, e::E] A[e*r:(e+1)*r], (out, in).
mx::array peft_delta(const mx::array& a, const mx::array& b, int e, int experts, int rank,
                     float scale) {
  auto a_e = mx::slice(a, {e * rank, 0}, {(e + 1) * rank, a.shape(1)});
  auto b_e = mx::slice(b, {0, e}, {b.shape(0), b.shape(1)}, {1, experts});
  return mx::multiply(mx::array(scale), mx::matmul(b_e, a_e));
}

LoraConfig expert_config() {
  LoraConfig c;
  c.rank = kRank;
  c.alpha = 3.0f;
  c.target_modules = {"up", "down"};
  return c;
}

// Nonzero adapters on every ExpertLoRA of model.
void randomize_adapters(Module& model, uint64_t seed) {
  ft::ParamMap values;
  for (const auto& [name, value] : model.trainable_parameters())
    values.set(name, randn(value.shape(), seed++, 0.5f));
  model.update(values);
}

TEST(ExpertLoRA, FreshAdapterHasPeftShapesAndZeroDelta) {
  ExpertLoRA lora(kExperts, kOut, kIn, kRank, 4.0f, mx::random::key(1));
  EXPECT_EQ(lora.lora_A().shape(), (mx::Shape{kExperts * kRank, kIn}));
  EXPECT_EQ(lora.lora_B().shape(), (mx::Shape{kOut, kExperts * kRank}));
  EXPECT_EQ(lora.rank(), kRank);
  EXPECT_FLOAT_EQ(lora.scale(), 2.0f);
  EXPECT_GT(max_abs(lora.lora_A()), 0.0f);
  EXPECT_EQ(max_abs(lora.delta_weight()), 0.0f);
  EXPECT_EQ(lora.delta_weight().shape(), (mx::Shape{kExperts, kOut, kIn}));
  ExpertLoRA rs(kExperts, kOut, kIn, 4, 4.0f, mx::random::key(1), /*rslora=*/true);
  EXPECT_FLOAT_EQ(rs.scale(), 2.0f);
}

TEST(ExpertLoRA, DeltaAndForwardFollowPeftsLayout) {
  ExpertLoRA lora(kExperts, kOut, kIn, kRank, 3.0f, mx::random::key(1));
  auto a = randn({kExperts * kRank, kIn}, 5), b = randn({kOut, kExperts * kRank}, 6);
  lora.update(ft::ParamMap::zip({"lora_A", "lora_B"}, {a, b}));
  auto delta = lora.delta_weight();  // (E, out, in)
  auto x = randn({6, 1, kIn}, 7);
  auto indices = mx::array({2, 0, 1, 1, 2, 0}, mx::uint32);
  auto term = lora(x, indices);  // (6, 1, out)
  ASSERT_EQ(term.shape(), (mx::Shape{6, 1, kOut}));
  for (int e = 0; e < kExperts; ++e) {
    auto want = peft_delta(a, b, e, kExperts, kRank, 1.5f);
    auto got = mx::squeeze(mx::slice(delta, {e, 0, 0}, {e + 1, kOut, kIn}), 0);
    EXPECT_LT(max_abs_diff(got, want), 1e-5f) << "expert " << e;
  }
  std::vector<int> chosen{2, 0, 1, 1, 2, 0};
  for (int t = 0; t < 6; ++t) {
    auto row = mx::slice(x, {t, 0, 0}, {t + 1, 1, kIn});
    auto want = mx::matmul(row, mx::transpose(peft_delta(a, b, chosen[t], kExperts, kRank, 1.5f)));
    EXPECT_LT(max_abs_diff(mx::slice(term, {t, 0, 0}, {t + 1, 1, kOut}), want), 1e-5f)
        << "token " << t;
  }
}

TEST(ExpertLoRA, ApplyLoraAdaptsNamedStackedParametersOnly) {
  ToyModel model;
  auto x = randn({5, kIn}, 11);
  auto indices = mx::array({0, 1, 2, 1, 0}, mx::uint32);
  auto before = model(x, indices);
  auto paths = ft::nn::apply_lora(model, expert_config());
  EXPECT_EQ(paths, (std::vector<std::string>{"layers.0.experts.up", "layers.0.experts.down",
                                             "layers.1.experts.up", "layers.1.experts.down"}));
  EXPECT_EQ(
      model.trainable_parameters().names(),
      (std::vector<std::string>{"layers.0.experts.up.lora_A", "layers.0.experts.up.lora_B",
                                "layers.0.experts.down.lora_A", "layers.0.experts.down.lora_B",
                                "layers.1.experts.up.lora_A", "layers.1.experts.up.lora_B",
                                "layers.1.experts.down.lora_A", "layers.1.experts.down.lora_B"}));
  EXPECT_TRUE(model.is_frozen("layers.0.experts.up"));
  EXPECT_EQ(model.parameters().at("layers.1.experts.down.lora_A").shape(),
            (mx::Shape{kExperts * kRank, kOut}));
  EXPECT_EQ(model.parameters().at("layers.1.experts.down.lora_B").shape(),
            (mx::Shape{kIn, kExperts * kRank}));
  // B starts at zero: the adapted model computes what the base did.
  EXPECT_LT(max_abs_diff(model(x, indices), before), 1e-6f);
  // A second pass adapts nothing new.
  EXPECT_FT_ERROR(ft::nn::apply_lora(model, expert_config()), "matches the targets");
}

TEST(ExpertLoRA, ApplyLoraHonoursRegexAndNumLayers) {
  ToyModel by_regex;
  LoraConfig regex = expert_config();
  regex.target_modules.clear();
  regex.target_regex = R"(^layers\.0\.experts\.down$)";
  EXPECT_EQ(ft::nn::apply_lora(by_regex, regex),
            (std::vector<std::string>{"layers.0.experts.down"}));
  ToyModel last;
  LoraConfig one_layer = expert_config();
  one_layer.target_modules = {"up"};
  one_layer.num_layers = 1;
  EXPECT_EQ(ft::nn::apply_lora(last, one_layer), (std::vector<std::string>{"layers.1.experts.up"}));
  EXPECT_EQ(last.layers->operator[](0).experts->adapter("up"), nullptr);
}

TEST(ExpertLoRA, DoraAndDropoutAreRefusedAndNothingChanges) {
  ToyModel model;
  LoraConfig dora = expert_config();
  dora.dora = true;
  EXPECT_FT_ERROR(ft::nn::apply_lora(model, dora), "DoRA on the stacked expert parameter");
  LoraConfig dropout = expert_config();
  dropout.dropout = 0.1f;
  EXPECT_FT_ERROR(ft::nn::apply_lora(model, dropout), "dropout on the stacked expert parameter");
  EXPECT_EQ(model.trainable_parameters().size(), model.parameters().size());
  EXPECT_EQ(model.layers->operator[](0).experts->adapter("up"), nullptr);
}

// The adapters' gradients through the gathered products equal those of a reference that
// adds each token's expert delta to its weight explicitly.
TEST(ExpertLoRA, GradientsMatchPerExpertReference) {
  ToyModel model;
  ft::nn::apply_lora(model, expert_config());
  randomize_adapters(model, 40);
  auto x = randn({7, kIn}, 12);
  std::vector<int> chosen{0, 2, 1, 1, 0, 2, 2};
  auto indices = mx::array(chosen.data(), {7}, mx::uint32);
  auto trainable = model.trainable_parameters();
  auto names = trainable.names();
  std::vector<mx::array> values;
  for (const auto& name : names) values.push_back(trainable.at(name));
  std::vector<int> argnums(names.size());
  for (size_t i = 0; i < argnums.size(); ++i) argnums[i] = static_cast<int>(i);

  auto loss = [&](const std::vector<mx::array>& v) {
    model.update(ft::ParamMap::zip(names, v));
    return std::vector<mx::array>{mx::sum(mx::square(model(x, indices)))};
  };
  auto reference = [&](const std::vector<mx::array>& v) {
    auto p = ft::ParamMap::zip(names, v);
    auto base = model.parameters();
    mx::array h = x;
    for (int layer = 0; layer < 2; ++layer) {
      const std::string prefix = "layers." + std::to_string(layer) + ".experts.";
      std::vector<mx::array> rows;
      for (int t = 0; t < 7; ++t) {
        auto row = mx::slice(h, {t, 0}, {t + 1, kIn});
        int e = chosen[t];
        auto weight = [&](const std::string& name, int out, int in) {
          auto w = mx::reshape(mx::slice(base.at(prefix + name), {e, 0, 0}, {e + 1, out, in}),
                               {out, in});
          return w + peft_delta(p.at(prefix + name + ".lora_A"), p.at(prefix + name + ".lora_B"), e,
                                kExperts, kRank, 1.5f);
        };
        auto mid = mx::tanh(mx::matmul(row, mx::transpose(weight("up", kOut, kIn))));
        rows.push_back(mx::matmul(mid, mx::transpose(weight("down", kIn, kOut))));
      }
      h = mx::concatenate(rows, 0);
    }
    return std::vector<mx::array>{mx::sum(mx::square(h))};
  };
  auto [value, grads] = mx::value_and_grad(loss, argnums)(values);
  auto [want_value, want_grads] = mx::value_and_grad(reference, argnums)(values);
  EXPECT_NEAR(value[0].item<float>(), want_value[0].item<float>(),
              1e-4f * std::abs(want_value[0].item<float>()));
  for (size_t i = 0; i < names.size(); ++i) {
    EXPECT_GT(max_abs(want_grads[i]), 0.0f) << names[i];
    EXPECT_LT(max_abs_diff(grads[i], want_grads[i]), 1e-4f * max_abs(want_grads[i])) << names[i];
  }
}

TEST(ExpertLoRA, FuseMergesIntoTheStackedWeightsAndRemovesTheAdapters) {
  ToyModel model;
  ft::nn::apply_lora(model, expert_config());
  randomize_adapters(model, 60);
  auto x = randn({6, kIn}, 13);
  auto indices = mx::array({1, 0, 2, 2, 1, 0}, mx::uint32);
  auto adapted = model(x, indices);
  auto base = model.parameters().at("layers.0.experts.up");
  EXPECT_EQ(ft::nn::fuse_lora(model),
            (std::vector<std::string>{"layers.0.experts.up", "layers.0.experts.down",
                                      "layers.1.experts.up", "layers.1.experts.down"}));
  EXPECT_EQ(model.parameters().names(),
            (std::vector<std::string>{"layers.0.experts.up", "layers.0.experts.down",
                                      "layers.1.experts.up", "layers.1.experts.down"}));
  EXPECT_GT(max_abs_diff(model.parameters().at("layers.0.experts.up"), base), 1e-3f);
  EXPECT_LT(max_abs_diff(model(x, indices), adapted), 1e-4f * max_abs(adapted));
  EXPECT_TRUE(ft::nn::fuse_lora(model).empty());
}

}  // namespace
