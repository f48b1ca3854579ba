#include <gtest/gtest.h>

#include <cmath>

#include <mlx/ops.h>

#include "ft/core/error.h"
#include "ft/nn/norm.h"
#include "nn_test_util.h"

namespace mx = mlx::core;
using ft::nn::LayerNorm;
using ft::nn::RMSNorm;
using ft_test::randn;
using ft_test::to_vector;

namespace {

// Row-by-row reference in double precision.
std::vector<double> reference_norm(const std::vector<float>& x, int dims, float eps, bool rms,
                                   const std::vector<float>& weight,
                                   const std::vector<float>& bias) {
  std::vector<double> out(x.size());
  for (size_t row = 0; row < x.size() / dims; ++row) {
    const float* r = &x[row * dims];
    double mean = 0, sq = 0;
    for (int i = 0; i < dims; ++i) mean += r[i];
    mean = rms ? 0.0 : mean / dims;
    for (int i = 0; i < dims; ++i) sq += (r[i] - mean) * (r[i] - mean);
    double inv = 1.0 / std::sqrt(sq / dims + eps);
    for (int i = 0; i < dims; ++i) {
      double v = (r[i] - mean) * inv;
      if (!weight.empty()) v *= weight[i];
      if (!bias.empty()) v += bias[i];
      out[row * dims + i] = v;
    }
  }
  return out;
}

void expect_near(const mx::array& got, const std::vector<double>& expected, double tol) {
  auto g = to_vector(got);
  ASSERT_EQ(g.size(), expected.size());
  for (size_t i = 0; i < g.size(); ++i) EXPECT_NEAR(g[i], expected[i], tol) << i;
}

}  // namespace

TEST(RMSNorm, MatchesTheFormula) {
  RMSNorm norm(16, 1e-6f);
  auto w = randn({16}, 2);
  norm.update(ft::ParamMap{{"weight", w}});
  auto x = randn({3, 4, 16}, 1, 3.0f);
  expect_near(norm(x), reference_norm(to_vector(x), 16, 1e-6f, true, to_vector(w), {}), 1e-5);
  // A large eps shows it is used: ones of variance 1 are scaled by 1/sqrt(1 + eps).
  RMSNorm wide(4, 3.0f);
  expect_near(wide(mx::ones({1, 4})), std::vector<double>(4, 0.5), 1e-6);
  EXPECT_FT_ERROR(RMSNorm(4, 0.0f), "eps must be positive");
  EXPECT_FT_ERROR(norm(randn({2, 8}, 1)), "expected 16");
}

TEST(LayerNorm, AffineWithAndWithoutBias) {
  auto x = randn({5, 12}, 3, 2.0f);
  auto w = randn({12}, 4), b = randn({12}, 5);
  auto xs = to_vector(x);

  LayerNorm full(12, 1e-5f);
  EXPECT_EQ(full.parameters().names(), (std::vector<std::string>{"weight", "bias"}));
  full.update(ft::ParamMap{{"weight", w}, {"bias", b}});
  expect_near(full(x), reference_norm(xs, 12, 1e-5f, false, to_vector(w), to_vector(b)), 1e-5);

  LayerNorm no_bias(12, 1e-5f, true, false);
  EXPECT_EQ(no_bias.parameters().names(), std::vector<std::string>{"weight"});
  no_bias.update(ft::ParamMap{{"weight", w}});
  expect_near(no_bias(x), reference_norm(xs, 12, 1e-5f, false, to_vector(w), {}), 1e-5);

  LayerNorm plain(12, 1e-5f, false);
  EXPECT_TRUE(plain.parameters().empty());
  expect_near(plain(x), reference_norm(xs, 12, 1e-5f, false, {}, {}), 1e-5);
}
