// Stacked expert weights (StackedWeight, ExpertWeights): the gathered products, float and
// quantized, against a composite that dequantizes and multiplies each row by its own
// expert's matrix; gradients through mx::gather_qmm; the arrays an ExpertWeights
// registers as its weights change form; fusing an adapter into a quantized stack.
#include <gtest/gtest.h>

#include <mlx/ops.h>
#include <mlx/random.h>
#include <mlx/transforms.h>

#include "ft/core/error.h"
#include "ft/nn/experts.h"
#include "ft/nn/lora.h"
#include "nn_test_util.h"
#include "tests/test_util.h"

namespace mx = mlx::core;
using ft::nn::ExpertWeights;
using ft::nn::StackedWeight;
using ft_test::max_abs;
using ft_test::max_abs_diff;
using ft_test::randn;

namespace {

constexpr int kExperts = 4, kIn = 64, kOut = 48, kRows = 9;

// Row t of x (T, 1, in) times expert indices[t]'s (out, in) matrix of w, one at a time.
mx::array per_row_reference(const mx::array& x, const mx::array& w,
                            const std::vector<int>& chosen) {
  std::vector<mx::array> rows;
  for (int t = 0; t < static_cast<int>(chosen.size()); ++t) {
    int e = chosen[t];
    auto w_e = mx::reshape(mx::slice(w, {e, 0, 0}, {e + 1, w.shape(1), w.shape(2)}),
                           {w.shape(1), w.shape(2)});
    rows.push_back(mx::matmul(mx::slice(x, {t, 0, 0}, {t + 1, 1, x.shape(2)}), mx::transpose(w_e)));
  }
  return mx::concatenate(rows, 0);
}

mx::array indices_of(const std::vector<int>& chosen) {
  return mx::array(chosen.data(), {static_cast<int>(chosen.size())}, mx::uint32);
}

class ToyExperts : public ExpertWeights {
 public:
  explicit ToyExperts(uint64_t seed) {
    add_stacked("up", StackedWeight::floats(randn({kExperts, kOut, kIn}, seed)));
    add_stacked("down", StackedWeight::floats(randn({kExperts, kIn, kOut}, seed + 1)));
  }
};

// apply_lora adapts the modules under a root.
class Holder : public ft::nn::Module {
 public:
  Holder() : experts(std::make_shared<ToyExperts>(20)) { register_module("experts", &experts); }
  std::shared_ptr<ToyExperts> experts;
};

const std::vector<int> kChosen{3, 0, 1, 1, 2, 0, 3, 3, 2};
const std::vector<int> kSortedChosen{0, 0, 1, 1, 2, 2, 3, 3, 3};

TEST(StackedWeight, FloatProductEqualsEachRowsExpert) {
  auto w = randn({kExperts, kOut, kIn}, 1);
  auto x = randn({kRows, 1, kIn}, 2);
  auto stacked = StackedWeight::floats(w);
  EXPECT_EQ(stacked.in_features(), kIn);
  EXPECT_EQ(stacked.out_features(), kOut);
  auto want = per_row_reference(x, w, kChosen);
  EXPECT_LT(max_abs_diff(stacked.project(x, indices_of(kChosen)), want), 1e-4f * max_abs(want));
  // The grouped form runs as TF32 on NVIDIA GPUs.
  auto sorted_want = per_row_reference(x, w, kSortedChosen);
  EXPECT_LT(
      max_abs_diff(stacked.project(x, indices_of(kSortedChosen), /*sorted=*/true), sorted_want),
      ft::testing::tf32_tolerance(1e-4f) * max_abs(sorted_want));
  // bfloat16 on the CPU goes through float32 and comes back.
  auto half = StackedWeight::floats(mx::astype(w, mx::bfloat16));
  auto y = half.project(mx::astype(x, mx::bfloat16), indices_of(kChosen));
  EXPECT_EQ(y.dtype(), mx::bfloat16);
  EXPECT_LT(max_abs_diff(y, want), 2e-2f * max_abs(want));
}

TEST(StackedWeight, QuantizedProductEqualsTheDequantizedComposite) {
  auto w = randn({kExperts, kOut, kIn}, 3);
  auto x = randn({kRows, 1, kIn}, 4);
  for (int bits : {4, 8}) {
    for (int group : {32, 64}) {
      auto q = StackedWeight::quantized(w, group, bits);
      ASSERT_TRUE(q.is_quantized());
      EXPECT_EQ(q.weight.dtype(), mx::uint32);
      EXPECT_EQ(q.weight.shape(), (mx::Shape{kExperts, kOut, kIn * bits / 32}));
      EXPECT_EQ(q.scales->shape(), (mx::Shape{kExperts, kOut, kIn / group}));
      EXPECT_EQ(q.in_features(), kIn);
      auto dense = q.dequantized();
      // Quantization moved the weights, but not by more than a group's step.
      EXPECT_GT(max_abs_diff(dense, w), 0.0f);
      EXPECT_LT(max_abs_diff(dense, w), bits == 8 ? 0.05f : 0.8f);
      for (const auto& chosen : {kChosen, kSortedChosen}) {
        bool sorted = &chosen == &kSortedChosen || chosen == kSortedChosen;
        auto want = per_row_reference(x, dense, chosen);
        auto got = q.project(x, indices_of(chosen), sorted);
        EXPECT_LT(max_abs_diff(got, want), 1e-4f * max_abs(want))
            << bits << " bits, groups of " << group << (sorted ? ", sorted" : "");
      }
    }
  }
  EXPECT_FT_ERROR(StackedWeight::quantized(randn({2, 8, 48}, 5), 32, 4),
                  "group_size 32 does not divide the quantized dimension 48");
  EXPECT_FT_ERROR(StackedWeight::quantized(w, 64, 7), "bits must be 2, 3, 4, 5, 6 or 8");
  EXPECT_FT_ERROR(StackedWeight::floats(randn({8, 8}, 6)), "(experts, out, in), got 2-D");
}

TEST(StackedWeight, GradientOfTheInputThroughQuantizedExpertsMatchesTheComposite) {
  auto q = StackedWeight::quantized(randn({kExperts, kOut, kIn}, 7), 32, 4);
  auto dense = q.dequantized();
  auto indices = indices_of(kSortedChosen);
  auto x = randn({kRows, 1, kIn}, 8);
  auto through = [&](const mx::array& x) {
    return mx::sum(mx::square(q.project(x, indices, true)));
  };
  auto composite = [&](const mx::array& x) {
    return mx::sum(mx::square(per_row_reference(x, dense, kSortedChosen)));
  };
  auto got = mx::grad(through)(x);
  auto want = mx::grad(composite)(x);
  EXPECT_GT(max_abs(want), 0.0f);
  EXPECT_LT(max_abs_diff(got, want), 1e-4f * max_abs(want));
}

TEST(ExpertWeights, RegistersTheArraysOfEachFormAndKeepsTheAdapter) {
  ToyExperts experts(10);
  EXPECT_EQ(experts.stacked_names(), (std::vector<std::string>{"up", "down"}));
  EXPECT_EQ(experts.parameters().names(), (std::vector<std::string>{"up", "down"}));
  experts.freeze("^down$");

  auto up = experts.stacked("up").weight;
  experts.set_stacked("up", StackedWeight::quantized(up, 64, 4));
  auto names = experts.parameters().names();
  EXPECT_EQ(names, (std::vector<std::string>{"down", "up", "up_scales", "up_biases"}));
  // Quantized arrays are frozen; the other weight keeps its state.
  EXPECT_TRUE(experts.is_frozen("up"));
  EXPECT_TRUE(experts.is_frozen("up_scales"));
  EXPECT_EQ(experts.trainable_parameters().size(), 0u);
  experts.unfreeze("^down$");
  EXPECT_EQ(experts.trainable_parameters().names(), (std::vector<std::string>{"down"}));

  // Back to floats: the companions go, and the floats are the dequantized values.
  auto dense = experts.stacked("up").dequantized();
  experts.set_stacked("up", StackedWeight::floats(dense));
  EXPECT_EQ(experts.parameters().names(), (std::vector<std::string>{"down", "up"}));
  EXPECT_EQ(max_abs_diff(experts.parameters().at("up"), dense), 0.0f);

  EXPECT_FT_ERROR(experts.set_stacked("up", StackedWeight::floats(randn({kExperts, kOut, 32}, 1))),
                  "'up' is (4, 48, 64); the new weight is (4, 48, 32)");
  EXPECT_FT_ERROR(experts.stacked("gate"), "no stacked expert parameter 'gate' (up, down)");
}

TEST(ExpertWeights, FuseIntoAQuantizedStackRequantizesOrDequantizes) {
  for (bool dequantize : {false, true}) {
    Holder holder;
    ToyExperts& experts = *holder.experts;
    auto w = experts.stacked("up").weight;
    experts.set_stacked("up", StackedWeight::quantized(w, 32, 8));
    ft::nn::LoraConfig config;
    config.rank = 2;
    config.alpha = 4.0f;
    config.target_modules = {"up"};
    ASSERT_EQ(ft::nn::apply_lora(holder, config), (std::vector<std::string>{"experts.up"}));
    ft::ParamMap values;
    for (const auto& [name, value] : holder.trainable_parameters())
      values.set(name, randn(value.shape(), 30, 0.1f));
    holder.update(values);

    auto x = randn({kRows, 1, kIn}, 9);
    auto indices = indices_of(kChosen);
    auto adapted = experts.project("up", x, indices);
    auto merged =
        mx::add(experts.stacked("up").dequantized(), experts.adapter("up")->delta_weight());
    EXPECT_EQ(ft::nn::fuse_lora(holder, dequantize), (std::vector<std::string>{"experts.up"}));
    EXPECT_EQ(experts.adapter("up"), nullptr);
    const StackedWeight& fused = experts.stacked("up");
    EXPECT_EQ(fused.is_quantized(), !dequantize);
    if (dequantize) {
      EXPECT_EQ(max_abs_diff(fused.weight, merged), 0.0f);
      EXPECT_EQ(experts.parameters().names(), (std::vector<std::string>{"down", "up"}));
    } else {
      EXPECT_EQ(fused.group_size, 32);
      EXPECT_EQ(fused.bits, 8);
      EXPECT_EQ(experts.parameters().names(),
                (std::vector<std::string>{"down", "up", "up_scales", "up_biases"}));
      EXPECT_GT(max_abs_diff(fused.dequantized(), merged), 0.0f);  // re-quantized
    }
    // The merged stack gives the adapted outputs, up to 8-bit re-quantization.
    EXPECT_LT(max_abs_diff(experts.project("up", x, indices), adapted),
              (dequantize ? 1e-4f : 2e-2f) * max_abs(adapted));
  }
}

}  // namespace
