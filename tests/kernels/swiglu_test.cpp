// swiglu against independent references: values computed here in double, finite
// differences, autodiff of the composite version, and (on a CUDA machine) the CPU result.
#include <gtest/gtest.h>

#include "tests/test_util.h"

#include <cmath>
#include <functional>
#include <iostream>
#include <string>
#include <unordered_set>
#include <vector>

#include <mlx/backend/cuda/cuda.h>
#include <mlx/compile.h>
#include <mlx/ops.h>
#include <mlx/primitives.h>
#include <mlx/random.h>
#include <mlx/transforms.h>

#include "ft/core/error.h"
#include "ft/kernels/swiglu.h"

namespace mx = mlx::core;
using ft::kernels::swiglu;
using ft::kernels::swiglu_composite;
using ft::kernels::swiglu_uses_cuda_kernel;

namespace {

const mx::Device cpu = mx::Device::cpu;

mx::array normal(const mx::Shape& shape, mx::Dtype dtype, uint64_t seed, float scale = 2.0f) {
  return mx::random::normal(shape, dtype, 0.0f, scale, mx::random::key(seed), cpu);
}

// Largest |a - b| as a double, both read as float64 on the CPU.
double max_abs_diff(const mx::array& a, const mx::array& b) {
  auto d = mx::max(
      mx::abs(mx::subtract(mx::astype(a, mx::float64, cpu), mx::astype(b, mx::float64, cpu), cpu),
              cpu),
      cpu);
  return d.item<double>();
}

// Largest |a - b| / (atol + rtol * |b|); <= 1 means a is within tolerance of b.
double tolerance_ratio(const mx::array& a, const mx::array& b, double rtol, double atol) {
  auto a64 = mx::astype(a, mx::float64, cpu), b64 = mx::astype(b, mx::float64, cpu);
  auto err = mx::abs(mx::subtract(a64, b64, cpu), cpu);
  auto allowed =
      mx::add(mx::array(atol), mx::multiply(mx::array(rtol), mx::abs(b64, cpu), cpu), cpu);
  return mx::max(mx::divide(err, allowed, cpu), cpu).item<double>();
}

std::vector<double> to_doubles(const mx::array& a) {
  auto d = mx::astype(mx::flatten(a, cpu), mx::float64, cpu);
  mx::eval(d);
  return std::vector<double>(d.data<double>(), d.data<double>() + d.size());
}

double sigmoid(double x) {
  return 1.0 / (1.0 + std::exp(-x));
}

// loss(gate, up) = sum(swiglu(gate, up) * weight), so the cotangent is weight, not ones.
using SwigluFn = std::function<mx::array(const mx::array&, const mx::array&)>;
std::function<std::vector<mx::array>(const std::vector<mx::array>&)> weighted_loss(
    SwigluFn f, mx::array weight, mx::StreamOrDevice s) {
  return [f, weight, s](const std::vector<mx::array>& in) -> std::vector<mx::array> {
    auto y = mx::astype(f(in[0], in[1]), mx::float32, s);
    return {mx::sum(mx::multiply(y, weight, s), s)};
  };
}

// Gradients of weighted_loss with respect to (gate, up).
std::vector<mx::array> grads_of(SwigluFn f, const mx::array& gate, const mx::array& up,
                                const mx::array& weight, mx::StreamOrDevice s) {
  auto [value, grads] = mx::value_and_grad(
      weighted_loss(f, weight, s), std::vector<int>{0, 1})(std::vector<mx::array>{gate, up});
  mx::eval(grads);
  return grads;
}

// Whether a primitive named `name` produced `a` or any array it depends on. Must run
// before `a` is evaluated: evaluation detaches the graph.
bool graph_has(const mx::array& a, const std::string& name) {
  std::unordered_set<std::uintptr_t> seen;
  std::vector<mx::array> todo{a};
  while (!todo.empty()) {
    auto x = todo.back();
    todo.pop_back();
    if (!x.has_primitive() || !seen.insert(x.id()).second) continue;
    if (name == x.primitive().name()) return true;
    for (const auto& in : x.inputs()) todo.push_back(in);
  }
  return false;
}

}  // namespace

// ---- the CPU path: custom_vjp with the composite forward and hand-written backward ----

TEST(Swiglu, MatchesValuesComputedInDouble) {
  auto gate = normal({5, 7}, mx::float32, 1);
  auto up = normal({5, 7}, mx::float32, 2);
  auto out = swiglu(gate, up, cpu);
  EXPECT_EQ(out.shape(), gate.shape());
  EXPECT_EQ(out.dtype(), mx::float32);
  auto x = to_doubles(gate), u = to_doubles(up), y = to_doubles(out);
  for (size_t i = 0; i < x.size(); ++i) {
    EXPECT_NEAR(y[i], x[i] * sigmoid(x[i]) * u[i], 1e-5 * (1 + std::abs(y[i]))) << "at " << i;
  }
  // Hand-checked points: silu(0) = 0, silu(1) * 2 = 2 / (1 + e^-1).
  auto small = swiglu(mx::array({0.0f, 1.0f}), mx::array({3.0f, 2.0f}), cpu);
  auto v = to_doubles(small);
  EXPECT_EQ(v[0], 0.0);
  EXPECT_NEAR(v[1], 1.4621171572600098, 1e-6);
}

TEST(Swiglu, GradientsMatchAutodiffOfComposite) {
  for (auto dtype : {mx::float32, mx::bfloat16, mx::float16}) {
    auto gate = normal({3, 33}, dtype, 3);
    auto up = normal({3, 33}, dtype, 4);
    auto weight = normal({3, 33}, mx::float32, 5, 1.0f);
    auto fused =
        grads_of([](auto& g, auto& u) { return swiglu(g, u, cpu); }, gate, up, weight, cpu);
    auto composite = grads_of([](auto& g, auto& u) { return swiglu_composite(g, u, cpu); }, gate,
                              up, weight, cpu);
    // Both compute in float32; autodiff rounds its intermediates to the storage dtype.
    double rtol = dtype == mx::float32 ? 1e-5 : 2e-2;
    for (int i = 0; i < 2; ++i) {
      EXPECT_EQ(fused[i].dtype(), dtype);
      EXPECT_EQ(fused[i].shape(), gate.shape());
      EXPECT_LE(tolerance_ratio(fused[i], composite[i], rtol, rtol), 1.0)
          << "input " << i << " dtype " << dtype;
    }
  }
}

TEST(Swiglu, GradientsMatchFiniteDifferences) {
  ft::testing::OnCpu on_cpu;
  auto gate = normal({3, 4}, mx::float64, 6);
  auto up = normal({3, 4}, mx::float64, 7);
  auto weight = normal({3, 4}, mx::float64, 8, 1.0f);
  auto loss = [&](const std::vector<mx::array>& in) -> std::vector<mx::array> {
    return {mx::sum(mx::multiply(swiglu(in[0], in[1], cpu), weight, cpu), cpu)};
  };
  auto [value, grads] = mx::value_and_grad(loss, std::vector<int>{0, 1})({gate, up});
  const auto x = to_doubles(gate), u = to_doubles(up), w = to_doubles(weight);
  const auto d_gate = to_doubles(grads[0]), d_up = to_doubles(grads[1]);
  // MLX's float64 exp on the CPU is only accurate to about 1e-8, so two references:
  // central differences of the same function written here in double (tight), and
  // central differences of the MLX loss itself with a larger step (loose).
  auto term = [](double x, double u) { return x * sigmoid(x) * u; };
  const double h = 1e-6;
  for (size_t i = 0; i < x.size(); ++i) {
    double num_gate = w[i] * (term(x[i] + h, u[i]) - term(x[i] - h, u[i])) / (2 * h);
    double num_up = w[i] * (term(x[i], u[i] + h) - term(x[i], u[i] - h)) / (2 * h);
    EXPECT_NEAR(d_gate[i], num_gate, 1e-6 * (1 + std::abs(num_gate))) << "d_gate at " << i;
    EXPECT_NEAR(d_up[i], num_up, 1e-6 * (1 + std::abs(num_up))) << "d_up at " << i;
  }
  const double step = 1e-3;
  for (int which = 0; which < 2; ++which) {
    const auto& analytic = which == 0 ? d_gate : d_up;
    for (int i = 0; i < 12; ++i) {
      auto at = [&](double delta) {
        auto e = mx::reshape(mx::equal(mx::arange(12, cpu), mx::array(i), cpu), {3, 4}, cpu);
        auto shift =
            mx::multiply(mx::astype(e, mx::float64, cpu), mx::array(delta, mx::float64), cpu);
        std::vector<mx::array> in{gate, up};
        in[which] = mx::add(in[which], shift, cpu);
        return loss(in)[0].item<double>();
      };
      double numeric = (at(step) - at(-step)) / (2 * step);
      EXPECT_NEAR(analytic[i], numeric, 2e-4 * (1 + std::abs(numeric)))
          << (which == 0 ? "d_gate" : "d_up") << " at " << i;
    }
  }
}

TEST(Swiglu, Bfloat16StaysWithinRoundingOfFloat32) {
  auto gate = normal({4, 64}, mx::bfloat16, 9);
  auto up = normal({4, 64}, mx::bfloat16, 10);
  auto weight = normal({4, 64}, mx::float32, 11, 1.0f);
  auto gate32 = mx::astype(gate, mx::float32, cpu), up32 = mx::astype(up, mx::float32, cpu);
  // Same inputs, so the only difference is one rounding to bfloat16 (8 significant bits).
  auto out = swiglu(gate, up, cpu);
  EXPECT_EQ(out.dtype(), mx::bfloat16);
  EXPECT_LE(tolerance_ratio(out, swiglu(gate32, up32, cpu), 1.0 / 256, 1e-6), 1.0);
  auto swiglu_cpu = [](auto& g, auto& u) { return swiglu(g, u, cpu); };
  auto g16 = grads_of(swiglu_cpu, gate, up, weight, cpu);
  auto g32 = grads_of(swiglu_cpu, gate32, up32, weight, cpu);
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(g16[i].dtype(), mx::bfloat16);
    // The cotangent is rounded to bfloat16 first, then the gradient: two roundings.
    EXPECT_LE(tolerance_ratio(g16[i], g32[i], 2.0 / 256, 1e-6), 1.0) << "input " << i;
  }
}

TEST(Swiglu, NonContiguousInputs) {
  auto gate = mx::transpose(normal({6, 5}, mx::float32, 12), cpu);
  auto up = mx::slice(normal({5, 12}, mx::float32, 13), {0, 0}, {5, 12}, {1, 2}, cpu);
  auto out = swiglu(gate, up, cpu);
  EXPECT_EQ(out.shape(), (mx::Shape{5, 6}));
  auto reference =
      swiglu_composite(mx::contiguous(gate, false, cpu), mx::contiguous(up, false, cpu), cpu);
  EXPECT_LT(max_abs_diff(out, reference), 1e-6);
}

TEST(Swiglu, CompiledGradientsMatchUncompiled) {
  auto gate = normal({8, 16}, mx::float32, 14);
  auto up = normal({8, 16}, mx::float32, 15);
  auto weight = normal({8, 16}, mx::float32, 16, 1.0f);
  auto step = mx::value_and_grad(
      weighted_loss([](auto& g, auto& u) { return swiglu(g, u, cpu); }, weight, cpu),
      std::vector<int>{0, 1});
  auto plain = step({gate, up});
  auto compiled = mx::compile([step](const std::vector<mx::array>& in) {
    auto [value, grads] = step(in);
    return std::vector<mx::array>{value[0], grads[0], grads[1]};
  })({gate, up});
  EXPECT_LT(max_abs_diff(compiled[0], plain.first[0]), 1e-5);
  EXPECT_LT(max_abs_diff(compiled[1], plain.second[0]), 1e-6);
  EXPECT_LT(max_abs_diff(compiled[2], plain.second[1]), 1e-6);
}

TEST(Swiglu, RejectsMismatchedInputs) {
  auto a = mx::zeros({2, 3}, mx::float32);
  EXPECT_THROW(swiglu(a, mx::zeros({3, 2}, mx::float32)), ft::Error);
  EXPECT_THROW(swiglu(a, mx::zeros({2, 3}, mx::bfloat16)), ft::Error);
  EXPECT_THROW(swiglu(mx::zeros({2, 3}, mx::int32), mx::zeros({2, 3}, mx::int32)), ft::Error);
  try {
    swiglu(a, mx::zeros({3, 2}, mx::float32));
  } catch (const ft::Error& e) {
    EXPECT_EQ(e.place(), "swiglu");
    EXPECT_NE(std::string(e.what()).find("same shape"), std::string::npos) << e.what();
  }
}

TEST(Swiglu, CpuStreamNeverUsesTheKernel) {
  EXPECT_FALSE(swiglu_uses_cuda_kernel(mx::zeros({4}, mx::float32), cpu));
  EXPECT_FALSE(graph_has(swiglu(mx::ones({4}), mx::ones({4}), cpu), "CustomKernel"));
}

TEST(Swiglu, CpuKernelsMatchCompositeOnLargeArraysAndExtremeValues) {
  // Large enough to be split over threads (and not a multiple of any vector width), with
  // gates far in both tails where sigmoid saturates and exp over- or underflows.
  for (mx::Dtype dtype : {mx::float32, mx::bfloat16}) {
    SCOPED_TRACE(dtype == mx::float32 ? "float32" : "bfloat16");
    auto gate = normal({3, 40001}, mx::float32, 11, 3.0f);
    auto extremes = mx::array({-200.0f, -90.0f, -30.0f, 30.0f, 90.0f, 200.0f});
    gate = mx::astype(mx::concatenate({mx::reshape(gate, {-1}), extremes}, 0, cpu), dtype, cpu);
    auto up = mx::astype(normal({static_cast<int>(gate.size())}, mx::float32, 12), dtype, cpu);
    auto weight = normal({static_cast<int>(gate.size())}, mx::float32, 13);

    auto out = swiglu(gate, up, cpu);
    EXPECT_TRUE(graph_has(out, "CpuSwiglu"));
    auto expected = swiglu_composite(gate, up, cpu);
    const bool f32 = dtype == mx::float32;
    // f32: a few ulp of the exp; bf16: both round the same f32 value, at most one bf16 ulp.
    EXPECT_LE(tolerance_ratio(out, expected, f32 ? 1e-6 : 8e-3, 1e-6), 1.0);

    auto grads =
        grads_of([](auto& g, auto& u) { return swiglu(g, u, cpu); }, gate, up, weight, cpu);
    auto reference = grads_of([](auto& g, auto& u) { return swiglu_composite(g, u, cpu); }, gate,
                              up, weight, cpu);
    for (int k = 0; k < 2; ++k) {
      EXPECT_EQ(grads[k].dtype(), dtype);
      EXPECT_LE(tolerance_ratio(grads[k], reference[k], f32 ? 2e-6 : 2e-2, 1e-5), 1.0)
          << "gradient " << k;
      bool has_nan = mx::any(mx::isnan(grads[k], cpu), cpu).item<bool>();
      EXPECT_FALSE(has_nan) << "gradient " << k;
    }
  }
}

// ---- the CUDA path: kernels on the GPU against the composite on the CPU ----

class SwigluCuda : public testing::Test {
 protected:
  void SetUp() override {
#ifndef FT_HAVE_PTX
    GTEST_SKIP() << "ft was built without its CUDA kernels (no nvcc, or FT_CUDA_KERNELS=OFF)";
#endif
    if (!mx::cu::is_available()) GTEST_SKIP() << "MLX's CUDA backend is not available here";
  }
};

TEST_F(SwigluCuda, KernelsMatchCpuComposite) {
  const mx::Device gpu = mx::Device::gpu;
  // Sizes below, at and past one block, not multiples of the vector width, and large.
  const std::vector<mx::Shape> shapes = {{1},       {7},          {3, 5},    {256},
                                         {4, 1000}, {2, 3, 4097}, {8, 11008}};
  uint64_t seed = 100;
  for (auto dtype : {mx::float32, mx::bfloat16, mx::float16}) {
    // Forward: one rounding of a float32 result either side.
    const double rtol = dtype == mx::float32 ? 1e-5 : dtype == mx::bfloat16 ? 1.0 / 128 : 1e-3;
    for (const auto& shape : shapes) {
      auto gate = normal(shape, dtype, ++seed);
      auto up = normal(shape, dtype, ++seed);
      auto weight = normal(shape, mx::float32, ++seed, 1.0f);
      SCOPED_TRACE(testing::Message() << "dtype " << dtype << " shape " << shape);
      ASSERT_TRUE(swiglu_uses_cuda_kernel(gate, gpu));

      auto out = swiglu(gate, up, gpu);
      ASSERT_TRUE(graph_has(out, "CustomKernel"));
      EXPECT_LE(tolerance_ratio(out, swiglu_composite(gate, up, cpu), rtol, 1e-6), 1.0);

      // Backward: the kernel's gradients against autodiff of the composite on the CPU.
      auto [value, grads] = mx::value_and_grad(
          weighted_loss([gpu](auto& g, auto& u) { return swiglu(g, u, gpu); }, weight, gpu),
          std::vector<int>{0, 1})(std::vector<mx::array>{gate, up});
      ASSERT_TRUE(graph_has(grads[0], "CustomKernel"));
      auto reference = grads_of([](auto& g, auto& u) { return swiglu_composite(g, u, cpu); }, gate,
                                up, weight, cpu);
      const double grad_rtol = dtype == mx::float32 ? 1e-5 : 2e-2;
      for (int i = 0; i < 2; ++i) {
        EXPECT_EQ(grads[i].dtype(), dtype);
        EXPECT_LE(tolerance_ratio(grads[i], reference[i], grad_rtol, grad_rtol), 1.0)
            << "input " << i;
      }
    }
  }
  std::cout << "swiglu: CUDA kernels checked against the CPU composite\n";
}

TEST_F(SwigluCuda, NonContiguousAndUnalignedInputs) {
  const mx::Device gpu = mx::Device::gpu;
  for (auto dtype : {mx::float32, mx::bfloat16}) {
    SCOPED_TRACE(testing::Message() << "dtype " << dtype);
    const double rtol = dtype == mx::float32 ? 1e-5 : 1.0 / 128;
    // Transposed: the launcher makes a contiguous copy.
    auto gate = mx::transpose(normal({64, 33}, dtype, 200), cpu);
    auto up = mx::transpose(normal({64, 33}, dtype, 201), cpu);
    auto out = swiglu(gate, up, gpu);
    ASSERT_TRUE(graph_has(out, "CustomKernel"));
    EXPECT_LE(tolerance_ratio(out, swiglu_composite(gate, up, cpu), rtol, 1e-6), 1.0);
    // Row-contiguous views starting one element in: not 16-byte aligned, so the
    // kernel's scalar loop runs.
    auto flat_gate = normal({1001}, dtype, 202), flat_up = normal({1001}, dtype, 203);
    auto g1 = mx::slice(flat_gate, {1}, {1001}, cpu), u1 = mx::slice(flat_up, {1}, {1001}, cpu);
    EXPECT_LE(tolerance_ratio(swiglu(g1, u1, gpu), swiglu_composite(g1, u1, cpu), rtol, 1e-6), 1.0);
  }
}

TEST_F(SwigluCuda, DefaultStreamUsesTheKernelOnGpu) {
  // test_main makes the GPU MLX's default device unless FT_DEVICE=cpu says otherwise.
  if (mx::default_device() != mx::Device::gpu) GTEST_SKIP() << "the default device is the CPU";
  auto gate = normal({16}, mx::bfloat16, 300);
  EXPECT_TRUE(swiglu_uses_cuda_kernel(gate));
  EXPECT_TRUE(graph_has(swiglu(gate, gate), "CustomKernel"));
  EXPECT_FALSE(swiglu_uses_cuda_kernel(mx::zeros({0}, mx::float32)));
  // float64 arrays cannot exist on the GPU; one made on the CPU is refused.
  EXPECT_FALSE(swiglu_uses_cuda_kernel(mx::zeros({4}, mx::float64, mx::Device::cpu)));
}
