#include <gtest/gtest.h>

#include <mlx/compile.h>
#include <mlx/ops.h>
#include <mlx/random.h>

#include "ft/core/error.h"
#include "ft/nn/dropout.h"
#include "ft/nn/linear.h"
#include "nn_test_util.h"

namespace mx = mlx::core;
using ft::nn::Dropout;
using ft_test::max_abs_diff;

TEST(Dropout, MaskStatisticsAndScaling) {
  Dropout dropout(0.25f, 7);
  auto x = mx::full({200, 500}, 2.0f);
  auto y = dropout(x);
  auto values = ft_test::to_vector(y);
  size_t zeros = 0;
  for (float v : values) {
    if (v == 0.0f)
      ++zeros;
    else
      EXPECT_FLOAT_EQ(v, 2.0f / 0.75f);
  }
  // 100000 Bernoulli(0.25) draws: standard deviation ~137.
  EXPECT_NEAR(static_cast<double>(zeros) / values.size(), 0.25, 0.005);
  // Kept values are rescaled so the mean is preserved.
  EXPECT_NEAR(mx::mean(y).item<float>(), 2.0f, 0.02f);
}

TEST(Dropout, FreshMaskEachCallAndSeedDetermined) {
  auto x = mx::ones({64, 64});
  Dropout a(0.5f, 3), b(0.5f, 3), c(0.5f, 4);
  auto a1 = a(x), a2 = a(x);
  auto b1 = b(x), b2 = b(x);
  auto c1 = c(x);
  EXPECT_GT(max_abs_diff(a1, a2), 0.0f);  // a new key each step
  EXPECT_EQ(max_abs_diff(a1, b1), 0.0f);  // same seed, same sequence
  EXPECT_EQ(max_abs_diff(a2, b2), 0.0f);
  EXPECT_GT(max_abs_diff(a1, c1), 0.0f);  // other seed, other mask

  // The held key is the resumable state.
  Dropout d(0.5f, 3);
  d(x);
  Dropout e(0.5f, d.key());
  EXPECT_EQ(max_abs_diff(d(x), a2), 0.0f);
  EXPECT_EQ(max_abs_diff(e(x), a2), 0.0f);

  // An explicit key gives the same mask as a draw with that key.
  auto key = mx::random::key(11);
  Dropout f(0.5f, 3);
  auto expected = mx::where(mx::random::bernoulli(0.5f, {64, 64}, key), mx::full({64, 64}, 2.0f),
                            mx::zeros({64, 64}));
  EXPECT_EQ(max_abs_diff(f(x, key), expected), 0.0f);
}

TEST(Dropout, EvalModeAndZeroRateAreIdentity) {
  auto x = ft_test::randn({8, 8}, 1);
  Dropout dropout(0.9f);
  dropout.eval();
  EXPECT_FALSE(dropout.active());
  EXPECT_EQ(max_abs_diff(dropout(x), x), 0.0f);
  Dropout none(0.0f);
  EXPECT_FALSE(none.active());
  EXPECT_EQ(max_abs_diff(none(x), x), 0.0f);
}

TEST(Dropout, Errors) {
  EXPECT_FT_ERROR(Dropout(1.0f), "p must be in [0, 1), got 1");
  EXPECT_FT_ERROR(Dropout(-0.1f), "p must be in [0, 1)");
  EXPECT_FT_ERROR(Dropout(0.5f, mx::zeros({3}, mx::uint32)), "(2,) uint32");
}

namespace {

class TwoDropouts : public ft::nn::Module {
 public:
  TwoDropouts() {
    first_ = std::make_shared<Dropout>(0.5f, 1);
    second_ = std::make_shared<Dropout>(0.5f, 1);
    register_module("first", &first_);
    register_module("second", &second_);
  }
  std::shared_ptr<Dropout> first_, second_;
};

}  // namespace

TEST(Dropout, ReseedGivesEachDropoutItsOwnKey) {
  auto x = mx::ones({32, 32});
  TwoDropouts a, b;
  // Same seeds: the same masks before reseeding.
  EXPECT_EQ(max_abs_diff((*a.first_)(x), (*a.second_)(x)), 0.0f);
  ft::nn::reseed_dropout(a, mx::random::key(5));
  ft::nn::reseed_dropout(b, mx::random::key(5));
  auto a1 = (*a.first_)(x), a2 = (*a.second_)(x);
  EXPECT_GT(max_abs_diff(a1, a2), 0.0f);
  EXPECT_EQ(max_abs_diff(a1, (*b.first_)(x)), 0.0f);
  EXPECT_EQ(max_abs_diff(a2, (*b.second_)(x)), 0.0f);
}

TEST(Dropout, ReseededInsideCompileGivesAFreshMaskPerCall) {
  auto dropout = std::make_shared<Dropout>(0.5f);
  std::function<std::vector<mx::array>(const std::vector<mx::array>&)> fn =
      [dropout](const std::vector<mx::array>& in) {
        dropout->reseed(in[1]);
        return std::vector<mx::array>{(*dropout)(in[0])};
      };
  auto step = mx::compile(fn);
  auto x = mx::ones({16, 16});
  auto y1 = step({x, mx::random::key(1)})[0];
  auto y2 = step({x, mx::random::key(2)})[0];
  auto y1_again = step({x, mx::random::key(1)})[0];
  EXPECT_GT(max_abs_diff(y1, y2), 0.0f);
  EXPECT_EQ(max_abs_diff(y1, y1_again), 0.0f);
  // And it equals the eager result with the same key.
  Dropout eager(0.5f, mx::random::key(1));
  EXPECT_EQ(max_abs_diff(eager(x), y1), 0.0f);
}
