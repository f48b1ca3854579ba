#include <gtest/gtest.h>

#include "tests/test_util.h"

#include <mlx/compile.h>
#include <mlx/ops.h>
#include <mlx/random.h>
#include <mlx/transforms.h>

#include "ft/core/error.h"
#include "ft/nn/quantized_linear.h"
#include "nn_test_util.h"

namespace mx = mlx::core;
using ft::nn::Linear;
using ft::nn::QuantizedLinear;
using ft_test::max_abs_diff;
using ft_test::randn;

class QuantizedLinearCases : public ::testing::TestWithParam<std::tuple<int, int, bool>> {};

TEST_P(QuantizedLinearCases, ForwardEqualsDequantizedMatmul) {
  auto [bits, group_size, bias] = GetParam();
  Linear dense(256, 24, bias, mx::random::key(5));
  auto q = QuantizedLinear::from_linear(dense, group_size, bits);
  EXPECT_EQ(q->in_features(), 256);
  EXPECT_EQ(q->out_features(), 24);
  EXPECT_EQ(q->weight().shape(), (mx::Shape{24, 256 * bits / 32}));
  EXPECT_EQ(q->weight().dtype(), mx::uint32);
  EXPECT_EQ(q->scales().shape(), (mx::Shape{24, 256 / group_size}));

  // The composite: x dequantize(W)^T + b, with W unpacked by hand from the groups.
  auto x = randn({3, 7, 256}, 11);
  auto w = q->dequantized_weight();
  auto expected = mx::matmul(x, mx::transpose(w));
  if (bias) expected = mx::add(expected, *dense.bias());
  EXPECT_LT(max_abs_diff((*q)(x), expected), ft::testing::tf32_tolerance(2e-4f));

  // Dequantization itself: w = scale * code + bias per group, codes in [0, 2^bits).
  auto groups = mx::reshape(w, {24, 256 / group_size, group_size});
  auto codes = mx::divide(mx::subtract(groups, mx::expand_dims(q->biases(), -1)),
                          mx::expand_dims(q->scales(), -1));
  EXPECT_LT(max_abs_diff(codes, mx::round(codes)), 1e-2f);
  EXPECT_GE(mx::min(mx::round(codes)).item<float>(), 0.0f);
  EXPECT_LE(mx::max(mx::round(codes)).item<float>(), static_cast<float>((1 << bits) - 1));

  // Quantization error stays within one step of the group's grid (MLX's grid is not
  // centred on the group's range, so half a step is not guaranteed).
  auto step = mx::expand_dims(mx::abs(q->scales()), -1);
  auto err = mx::abs(mx::subtract(mx::reshape(dense.weight(), groups.shape()), groups));
  EXPECT_TRUE(mx::all(mx::less_equal(err, mx::add(step, mx::array(1e-6f)))).item<bool>());
  EXPECT_GT(max_abs_diff(w, dense.weight()), 0.0f);
}

INSTANTIATE_TEST_SUITE_P(
    BitsAndGroups, QuantizedLinearCases,
    ::testing::Values(std::make_tuple(4, 32, true), std::make_tuple(4, 64, false),
                      std::make_tuple(8, 128, true), std::make_tuple(8, 32, false),
                      std::make_tuple(2, 64, true), std::make_tuple(6, 64, false)));

TEST(QuantizedLinear, QuantizationArraysFrozenBiasTrainable) {
  Linear dense(64, 8, true, mx::random::key(1));
  auto q = QuantizedLinear::from_linear(dense, 64, 4);
  EXPECT_EQ(q->parameters().names(),
            (std::vector<std::string>{"weight", "scales", "biases", "bias"}));
  EXPECT_EQ(q->trainable_parameters().names(), std::vector<std::string>{"bias"});
}

TEST(QuantizedLinear, PlaceholdersLoadAQuantizedCheckpoint) {
  Linear dense(128, 16, true, mx::random::key(2));
  auto source = QuantizedLinear::from_linear(dense, 64, 8);
  QuantizedLinear target(128, 16, true, 64, 8);
  EXPECT_EQ(target.parameters().names(), source->parameters().names());
  target.load(source->parameters());
  auto x = randn({4, 128}, 3);
  EXPECT_EQ(max_abs_diff(target(x), (*source)(x)), 0.0f);
  // A 4-bit checkpoint does not fit an 8-bit layer: weight shape differs.
  auto four = QuantizedLinear::from_linear(dense, 64, 4);
  EXPECT_FT_ERROR(target.load(four->parameters()),
                  "'weight' has shape (16, 16), expected (16, 32)");
}

TEST(QuantizedLinear, Bfloat16KeepsItsDtype) {
  Linear dense(mx::astype(randn({16, 64}, 7), mx::bfloat16));
  auto q = QuantizedLinear::from_linear(dense, 32, 4);
  EXPECT_EQ(q->scales().dtype(), mx::bfloat16);
  auto y = (*q)(mx::astype(randn({2, 64}, 8), mx::bfloat16));
  EXPECT_EQ(y.dtype(), mx::bfloat16);
}

TEST(QuantizedLinear, Errors) {
  Linear dense(96, 8, false, mx::random::key(1));
  EXPECT_FT_ERROR(QuantizedLinear::from_linear(dense, 64, 4), "does not divide");
  EXPECT_FT_ERROR(QuantizedLinear::from_linear(dense, 32, 7), "bits must be 2, 3, 4, 5, 6 or 8");
  EXPECT_FT_ERROR(QuantizedLinear::from_linear(dense, 16, 4), "group_size must be 32, 64 or 128");
  EXPECT_FT_ERROR(QuantizedLinear(64, 0, false), "out_features must be positive");
  auto packed = mx::quantize(dense.weight(), 32, 4);
  EXPECT_FT_ERROR(QuantizedLinear(packed[0], packed[1], mx::zeros({8, 2}), std::nullopt, 32, 4),
                  "scales and biases must have shape (8, 3)");
  EXPECT_FT_ERROR(QuantizedLinear(dense.weight(), packed[1], packed[2], std::nullopt, 32, 4),
                  "2-D uint32");
  QuantizedLinear q(packed[0], packed[1], packed[2], std::nullopt, 32, 4);
  EXPECT_FT_ERROR(q(randn({2, 64}, 1)), "input's last dimension is 64, expected 96");
}

// Rows and sizes small and large: the backends pick different matmul kernels by
// shape (MLX's CUDA backend has separate paths for few rows and narrow outputs).
class QuantizedLinearShapes
    : public ::testing::TestWithParam<std::tuple<int, int, int, mx::Dtype>> {};

TEST_P(QuantizedLinearShapes, ForwardEqualsDequantizedMatmulOnTheCpu) {
  auto [rows, in, out, dtype] = GetParam();
  Linear dense(in, out, false, mx::random::key(rows + in + out));
  auto q = QuantizedLinear::from_linear(dense, 64, 4);
  auto x = mx::astype(randn({rows, in}, 3), dtype);
  mx::array expected = mx::array(0.0f);
  {
    ft::testing::OnCpu on_cpu;
    expected = mx::matmul(mx::astype(x, mx::float32), mx::transpose(q->dequantized_weight()));
    mx::eval(expected);
  }
  float scale = ft_test::max_abs(expected);
  float tolerance = dtype == mx::float32 ? ft::testing::tf32_tolerance(2e-5f) : 2e-2f;
  EXPECT_LT(max_abs_diff(mx::astype((*q)(x), mx::float32), expected), tolerance * scale)
      << rows << " x " << in << " -> " << out;
}

INSTANTIATE_TEST_SUITE_P(RowsAndSizes, QuantizedLinearShapes,
                         ::testing::Combine(::testing::Values(1, 5, 40), ::testing::Values(64, 256),
                                            ::testing::Values(32, 96),
                                            ::testing::Values(mx::float32, mx::bfloat16)));

// Note [Quantized products on the CPU]: the CPU multiplies by the dequantized matrix, made
// again in the backward. Its product and the gradient of its input equal those of MLX's
// own quantized_matmul, compiled or not.
TEST(QuantizedLinear, CpuProductAndInputGradientEqualMlxsQuantizedMatmul) {
  ft::testing::OnCpu on_cpu;
  Linear dense(256, 96, false, mx::random::key(7));
  auto q = QuantizedLinear::from_linear(dense, 64, 4);
  mx::array x = randn({5, 256}, 3), r = randn({5, 96}, 4);
  auto ours = [&](const std::vector<mx::array>& in) {
    return std::vector<mx::array>{mx::sum((*q)(in[0]) * r)};
  };
  auto mlx = [&](const std::vector<mx::array>& in) {
    return std::vector<mx::array>{mx::sum(
        mx::quantized_matmul(in[0], q->weight(), q->scales(), q->biases(), true, 64, 4) * r)};
  };
  auto value_and_grad = [](auto fn) {
    return [fn](const std::vector<mx::array>& in) {
      auto [value, grad] = mx::value_and_grad(fn)(in);
      return std::vector<mx::array>{value[0], grad[0]};
    };
  };
  const std::vector<mx::array> expected = value_and_grad(mlx)({x});
  mx::eval(expected);
  const float value = expected[0].item<float>();
  for (bool compiled : {false, true}) {
    auto f = value_and_grad(ours);
    std::vector<mx::array> got = compiled ? mx::compile(f)({x}) : f({x});
    mx::eval(got);
    EXPECT_LT(std::abs(got[0].item<float>() - value), 1e-4f * std::abs(value)) << compiled;
    EXPECT_LT(max_abs_diff(got[1], expected[1]), 1e-5f * ft_test::max_abs(expected[1])) << compiled;
  }
}
