#include <gtest/gtest.h>

#include <cmath>

#include <mlx/ops.h>

#include "ft/core/error.h"
#include "ft/nn/activations.h"
#include "nn_test_util.h"

namespace mx = mlx::core;
using ft_test::to_vector;

namespace {

double ref_silu(double x) {
  return x / (1.0 + std::exp(-x));
}
double ref_gelu(double x) {
  return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0)));
}
double ref_gelu_tanh(double x) {
  return 0.5 * x * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
}
double ref_relu(double x) {
  return x > 0 ? x : 0.0;
}

void check(const std::string& name, double (*ref)(double), double tol) {
  auto x = mx::linspace(-6.0, 6.0, 97);
  auto fn = ft::nn::activation_by_name(name);
  auto got = to_vector(fn(x));
  auto xs = to_vector(x);
  for (size_t i = 0; i < xs.size(); ++i)
    EXPECT_NEAR(got[i], ref(xs[i]), tol) << name << " at " << xs[i];
}

}  // namespace

TEST(Activations, MatchTheirFormulas) {
  check("silu", ref_silu, 1e-5);
  check("swish", ref_silu, 1e-5);
  check("gelu", ref_gelu, 1e-5);
  check("gelu_pytorch_tanh", ref_gelu_tanh, 1e-5);
  check("gelu_new", ref_gelu_tanh, 1e-5);
  check("relu", ref_relu, 0.0);
}

TEST(Activations, ExactAndTanhGeluDiffer) {
  // The two GELUs differ by up to ~4.7e-4 around |x| = 2.7: a swap would show.
  auto x = mx::array({2.7f});
  float exact = ft::nn::gelu(x).item<float>();
  float approx = ft::nn::gelu_tanh(x).item<float>();
  EXPECT_NEAR(exact, ref_gelu(2.7), 1e-6);
  EXPECT_NEAR(approx, ref_gelu_tanh(2.7), 1e-6);
  EXPECT_GT(std::abs(exact - approx), 4e-4);
}

TEST(Activations, KeepBfloat16) {
  auto x = mx::astype(mx::linspace(-3.0, 3.0, 8), mx::bfloat16);
  for (const char* name : {"silu", "gelu", "gelu_pytorch_tanh", "relu", "quick_gelu"})
    EXPECT_EQ(ft::nn::activation_by_name(name)(x).dtype(), mx::bfloat16) << name;
}

TEST(Activations, UnknownNameIsAnError) {
  EXPECT_FT_ERROR(ft::nn::activation_by_name("gelu_exact"), "unknown activation 'gelu_exact'");
  EXPECT_FT_ERROR(ft::nn::activation_by_name("SiLU"), "known: silu");
}
