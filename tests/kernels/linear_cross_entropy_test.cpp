// linear_cross_entropy (chunked, hand-written backward) against its composite version,
// against central finite differences in f64, and its peak memory against the composite's.
#include <gtest/gtest.h>

#include "tests/test_util.h"

#include <algorithm>
#include <cmath>
#include <optional>
#include <string>
#include <vector>

#include <mlx/compile.h>
#include <mlx/memory.h>
#include <mlx/ops.h>
#include <mlx/random.h>
#include <mlx/transforms.h>

#include "ft/core/error.h"
#include "ft/kernels/linear_cross_entropy.h"

namespace mx = mlx::core;
using ft::kernels::LinearCrossEntropyOptions;
using ft::train::Reduction;

namespace {

struct Case {
  mx::array hidden;   // (N, H)
  mx::array weight;   // (V, H)
  mx::array targets;  // (N,), some ignored
};

// Random inputs with every fifth token ignored.
Case make_case(int n, int h, int v, mx::Dtype dtype = mx::float32, uint64_t seed = 0) {
  auto keys = mx::random::split(mx::random::key(seed), 3);
  auto hidden = mx::random::normal({n, h}, mx::float32, 0, 1, mx::take(keys, 0, 0));
  auto weight = mx::random::normal({v, h}, mx::float32, 0, 1, mx::take(keys, 1, 0));
  auto targets = mx::random::randint(0, v, {n}, mx::int32, mx::take(keys, 2, 0));
  targets = mx::where(mx::equal(mx::remainder(mx::arange(n), mx::array(5)), mx::array(3)),
                      mx::array(-100), targets);
  Case c{mx::astype(hidden, dtype), mx::astype(weight, dtype), targets};
  mx::eval({c.hidden, c.weight, c.targets});
  return c;
}

using LossFn = mx::array (*)(const mx::array&, const mx::array&, const mx::array&,
                             const LinearCrossEntropyOptions&);

// Loss and gradients w.r.t. hidden and weight. For reduction none the per-token losses are
// weighted by fixed random numbers first, so the backward sees a non-uniform cotangent.
struct LossAndGrads {
  mx::array loss, grad_hidden, grad_weight;
};

LossAndGrads loss_and_grads(LossFn fn, const Case& c, const LinearCrossEntropyOptions& options) {
  auto token_weights =
      mx::random::uniform({static_cast<int>(c.targets.size())}, mx::float32, mx::random::key(9));
  auto [values, grads] = mx::value_and_grad(
      [&](const std::vector<mx::array>& p) {
        auto loss = fn(p[0], p[1], c.targets, options);
        if (options.reduction == Reduction::none) loss = mx::sum(mx::multiply(loss, token_weights));
        return std::vector<mx::array>{loss};
      },
      std::vector<int>{0, 1})({c.hidden, c.weight});
  mx::eval({values[0], grads[0], grads[1]});
  return {values[0], grads[0], grads[1]};
}

}  // namespace

TEST(LinearCrossEntropy, MatchesCompositeForChunkSizesReductionsAndSmoothing) {
  // float32 takes the CPU kernels on a CPU (and MLX's ops on a GPU); float64, on the CPU,
  // takes the path built from MLX's ops (loss_and_dlogits).
  for (mx::Dtype dtype : {mx::float32, mx::float64}) {
    std::optional<ft::testing::OnCpu> on_cpu;
    if (dtype == mx::float64) on_cpu.emplace();
    auto c = make_case(37, 16, 50, dtype);
    for (float smoothing : {0.0f, 0.2f}) {
      for (Reduction reduction : {Reduction::mean, Reduction::sum, Reduction::none}) {
        LinearCrossEntropyOptions options{.label_smoothing = smoothing, .reduction = reduction};
        auto expected = loss_and_grads(ft::kernels::linear_cross_entropy_composite, c, options);
        // 1 and 8 and 13 do not divide 37; 37 is one chunk; 64 is more than N; 0 is automatic.
        for (int chunk : {1, 8, 13, 37, 64, 0}) {
          SCOPED_TRACE("smoothing " + std::to_string(smoothing) + ", reduction " +
                       ft::train::reduction_name(reduction) + ", chunk " + std::to_string(chunk));
          options.chunk_size = chunk;
          auto actual = loss_and_grads(ft::kernels::linear_cross_entropy, c, options);
          EXPECT_EQ(actual.loss.dtype(), dtype);
          EXPECT_TRUE(ft::testing::all_close(actual.loss, expected.loss, 1e-5, 1e-5));
          EXPECT_TRUE(ft::testing::all_close(actual.grad_hidden, expected.grad_hidden, 1e-6, 1e-5));
          EXPECT_TRUE(ft::testing::all_close(actual.grad_weight, expected.grad_weight, 1e-6, 1e-5));
        }
      }
    }
  }
}

TEST(LinearCrossEntropy, FrozenWeightGetsZeroGradientAndHiddenStaysExact) {
  auto c = make_case(37, 16, 50, mx::float32, 1);
  LinearCrossEntropyOptions options{.label_smoothing = 0.1f, .chunk_size = 10};
  auto expected = loss_and_grads(ft::kernels::linear_cross_entropy_composite, c, options);
  options.weight_grad = false;
  auto actual = loss_and_grads(ft::kernels::linear_cross_entropy, c, options);
  EXPECT_TRUE(ft::testing::all_close(actual.loss, expected.loss, 1e-5, 1e-5));
  EXPECT_TRUE(ft::testing::all_close(actual.grad_hidden, expected.grad_hidden, 1e-6, 1e-5));
  EXPECT_EQ(mx::max(mx::abs(actual.grad_weight)).item<float>(), 0.0f);
}

TEST(LinearCrossEntropy, PerTokenLossesKeepTheTargetsShape) {
  auto c = make_case(12, 8, 20);
  auto hidden = mx::reshape(c.hidden, {3, 4, 8});
  auto targets = mx::reshape(c.targets, {3, 4});
  LinearCrossEntropyOptions options{.chunk_size = 5, .reduction = Reduction::none};
  auto fused = ft::kernels::linear_cross_entropy(hidden, c.weight, targets, options);
  auto composite = ft::kernels::linear_cross_entropy_composite(hidden, c.weight, targets, options);
  EXPECT_EQ(fused.shape(), (mx::Shape{3, 4}));
  EXPECT_TRUE(ft::testing::all_close(fused, composite, 1e-5, 1e-5));
  // Ignored tokens (every fifth, from index 3) have zero loss.
  EXPECT_EQ(mx::take(mx::reshape(fused, {12}), 3).item<float>(), 0.0f);
  EXPECT_GT(mx::take(mx::reshape(fused, {12}), 4).item<float>(), 0.0f);
}

// Mean smoothed cross-entropy of h w^T in plain double loops with std::exp: an independent
// reference, and exact enough for finite differences at eps 1e-6 (MLX's f64 exp is a fast
// approximation with ~1e-7 relative error, too coarse to difference at small eps).
double reference_loss(const std::vector<double>& h, const std::vector<double>& w,
                      const std::vector<int>& targets, int hidden, float smoothing) {
  const int n = static_cast<int>(targets.size()), v = static_cast<int>(w.size()) / hidden;
  double total = 0;
  int count = 0;
  for (int i = 0; i < n; ++i) {
    if (targets[i] == -100) continue;
    std::vector<double> z(v, 0.0);
    double max_z = -1e300, mean_z = 0, sum_exp = 0;
    for (int j = 0; j < v; ++j) {
      for (int k = 0; k < hidden; ++k) z[j] += h[i * hidden + k] * w[j * hidden + k];
      max_z = std::max(max_z, z[j]);
      mean_z += z[j] / v;
    }
    for (int j = 0; j < v; ++j) sum_exp += std::exp(z[j] - max_z);
    double lse = max_z + std::log(sum_exp);
    total += lse - (1.0 - smoothing) * z[targets[i]] - smoothing * mean_z;
    ++count;
  }
  return total / count;
}

template <typename T>
std::vector<T> values(const mx::array& a) {
  auto c = mx::contiguous(a);
  mx::eval(c);
  return std::vector<T>(c.data<T>(), c.data<T>() + c.size());
}

TEST(LinearCrossEntropy, GradientsMatchCentralFiniteDifferencesInF64) {
  ft::testing::OnCpu on_cpu;
  const int n = 6, hidden = 4, vocab = 7;
  auto c = make_case(n, hidden, vocab, mx::float64, 3);
  const float smoothing = 0.1f;
  LinearCrossEntropyOptions options{.label_smoothing = smoothing, .chunk_size = 4};
  auto analytic = loss_and_grads(ft::kernels::linear_cross_entropy, c, options);
  EXPECT_EQ(analytic.loss.dtype(), mx::float64);
  EXPECT_EQ(analytic.grad_hidden.dtype(), mx::float64);
  EXPECT_EQ(analytic.grad_weight.dtype(), mx::float64);

  auto h = values<double>(c.hidden), w = values<double>(c.weight);
  auto targets = values<int32_t>(c.targets);
  auto loss = [&] { return reference_loss(h, w, targets, hidden, smoothing); };
  EXPECT_NEAR(analytic.loss.item<double>(), loss(), 1e-6);

  // Central differences: truncation O(eps^2) ~1e-12, rounding ~1e-16 / eps ~1e-10.
  auto numeric = [&](std::vector<double>& x, const mx::Shape& shape) {
    const double eps = 1e-6;
    std::vector<double> out(x.size());
    for (size_t i = 0; i < x.size(); ++i) {
      double saved = x[i];
      x[i] = saved + eps;
      double up = loss();
      x[i] = saved - eps;
      double down = loss();
      x[i] = saved;
      out[i] = (up - down) / (2 * eps);
    }
    return mx::array(out.begin(), shape, mx::float64);
  };
  // The tolerance is set by MLX's f64 exp in the analytic side (~1e-7 relative).
  EXPECT_TRUE(
      ft::testing::all_close(analytic.grad_hidden, numeric(h, c.hidden.shape()), 1e-6, 1e-5));
  EXPECT_TRUE(
      ft::testing::all_close(analytic.grad_weight, numeric(w, c.weight.shape()), 1e-6, 1e-5));
  // The gradients are not trivially small: the comparison has something to compare.
  EXPECT_GT(mx::max(mx::abs(analytic.grad_weight)).item<double>(), 1e-2);
}

TEST(LinearCrossEntropy, Bf16InputsKeepTheirDtypeInGradientsAndLossInF32) {
  auto c = make_case(40, 16, 64, mx::bfloat16, 5);
  LinearCrossEntropyOptions options{.chunk_size = 16};
  auto fused = loss_and_grads(ft::kernels::linear_cross_entropy, c, options);
  auto composite = loss_and_grads(ft::kernels::linear_cross_entropy_composite, c, options);
  EXPECT_EQ(fused.loss.dtype(), mx::float32);
  EXPECT_EQ(fused.grad_hidden.dtype(), mx::bfloat16);
  EXPECT_EQ(fused.grad_weight.dtype(), mx::bfloat16);
  // Both round the logits to bf16; the gradients differ by bf16 rounding of dlogits.
  EXPECT_TRUE(ft::testing::all_close(fused.loss, composite.loss, 1e-4, 1e-4));
  EXPECT_TRUE(ft::testing::all_close(fused.grad_hidden, composite.grad_hidden, 2e-3, 2e-2));
  EXPECT_TRUE(ft::testing::all_close(fused.grad_weight, composite.grad_weight, 2e-3, 2e-2));
}

TEST(LinearCrossEntropy, WorksUnderCompile) {
  auto c = make_case(30, 8, 24, mx::float32, 7);
  LinearCrossEntropyOptions options{
      .label_smoothing = 0.1f, .chunk_size = 7, .reduction = Reduction::sum};
  auto step = mx::compile([options](const std::vector<mx::array>& in) {
    auto [values, grads] = mx::value_and_grad(
        [&](const std::vector<mx::array>& p) {
          return std::vector<mx::array>{
              ft::kernels::linear_cross_entropy(p[0], p[1], in[2], options)};
        },
        std::vector<int>{0, 1})({in[0], in[1]});
    return std::vector<mx::array>{values[0], grads[0], grads[1]};
  });
  auto out = step({c.hidden, c.weight, c.targets});
  auto expected = loss_and_grads(ft::kernels::linear_cross_entropy_composite, c, options);
  EXPECT_TRUE(ft::testing::all_close(out[0], expected.loss, 1e-5, 1e-5));
  EXPECT_TRUE(ft::testing::all_close(out[1], expected.grad_hidden, 1e-6, 1e-5));
  EXPECT_TRUE(ft::testing::all_close(out[2], expected.grad_weight, 1e-6, 1e-5));
}

TEST(LinearCrossEntropy, PeakMemoryIsBelowTheComposite) {
  // Measured on the CPU, whose allocator counts every buffer as it is made. MLX's CUDA
  // allocator reports peaks differently (bench_linear_cross_entropy shows them).
  ft::testing::OnCpu on_cpu;
  // Logits are 1024 x 8000 f32 = 31 MiB; the composite holds about three such arrays in
  // its backward, the chunked one a few 64-token chunks (2 MiB each).
  auto c = make_case(1024, 32, 8000, mx::float32, 11);
  auto peak = [&](LossFn fn) {
    LinearCrossEntropyOptions options{.chunk_size = 64, .reduction = Reduction::sum};
    mx::clear_cache();
    size_t base = mx::get_active_memory();
    mx::reset_peak_memory();
    loss_and_grads(fn, c, options);
    return static_cast<double>(mx::get_peak_memory() - base);
  };
  double composite = peak(ft::kernels::linear_cross_entropy_composite);
  double chunked = peak(ft::kernels::linear_cross_entropy);
  double logits = 1024.0 * 8000 * 4;
  EXPECT_GT(composite, logits);
  EXPECT_LT(chunked, composite / 4)
      << "chunked " << chunked / (1 << 20) << " MiB, composite " << composite / (1 << 20) << " MiB";
}

TEST(LinearCrossEntropy, BadInputIsAnError) {
  auto c = make_case(6, 4, 7);
  auto expect_error = [](auto f, const std::string& fragment) {
    try {
      f();
      ADD_FAILURE() << "expected ft::Error mentioning '" << fragment << "'";
    } catch (const ft::Error& e) {
      EXPECT_EQ(e.place(), "linear_cross_entropy");
      EXPECT_NE(e.fact().find(fragment), std::string::npos) << e.what();
    }
  };
  for (LossFn fn :
       {ft::kernels::linear_cross_entropy, ft::kernels::linear_cross_entropy_composite}) {
    expect_error([&] { fn(c.hidden, mx::zeros({7, 5}), c.targets, {}); }, "features");
    expect_error([&] { fn(c.hidden, c.weight, mx::zeros({5}, mx::int32), {}); },
                 "one target per row");
    expect_error([&] { fn(c.hidden, c.weight, mx::zeros({6}), {}); }, "integer");
    expect_error([&] { fn(c.hidden, mx::zeros({7}), c.targets, {}); }, "weight must be");
    expect_error([&] { fn(c.hidden, c.weight, c.targets, {.chunk_size = -1}); }, "chunk_size");
  }
  EXPECT_EQ(ft::kernels::linear_cross_entropy_chunk_size(4096, 32000, 0, 1, "cpu"), 262);
  EXPECT_EQ(ft::kernels::linear_cross_entropy_chunk_size(4096, 128256, 0, 1, "cpu"), 128);
  EXPECT_EQ(ft::kernels::linear_cross_entropy_chunk_size(100, 32000, 0, 1, "cpu"), 100);
  EXPECT_EQ(ft::kernels::linear_cross_entropy_chunk_size(100, 32000, 30, 1, "cpu"), 30);
  // Row shards running at once share the budget, down to 128 tokens each.
  EXPECT_EQ(ft::kernels::linear_cross_entropy_chunk_size(4096, 32000, 0, 2, "cpu"), 131);
  EXPECT_EQ(ft::kernels::linear_cross_entropy_chunk_size(4096, 32000, 0, 8, "cpu"), 128);
  EXPECT_EQ(ft::kernels::linear_cross_entropy_chunk_size(4096, 8000, 0, 4, "cpu"), 262);
  // A GPU chunk holds 256M logits (Note [Chunk size on a GPU]).
  EXPECT_EQ(ft::kernels::linear_cross_entropy_chunk_size(8192, 128256, 0, 1, "cuda"), 2092);
  EXPECT_EQ(ft::kernels::linear_cross_entropy_chunk_size(1000, 128256, 0, 1, "cuda"), 1000);
  EXPECT_EQ(ft::kernels::linear_cross_entropy_chunk_size(8192, 128256, 0, 1, "metal"), 261);
}

TEST(LinearCrossEntropy, CpuKernelPathsMatchTheComposite) {
  // On the CPU, sums and means take the gradients from the forward (Note [Gradients in the
  // forward on the CPU]); gradients_in_forward = false and per-token losses recompute them in
  // the backward. Every combination against the composite, with chunks that do not divide N.
  ft::testing::OnCpu on_cpu;
  for (mx::Dtype dtype : {mx::float32, mx::bfloat16}) {
    auto c = make_case(45, 12, 70, dtype, 13);
    // The reference runs in f32 on the same (rounded) inputs; bf16 results are off by the
    // rounding of dlogits and of the bf16 matmuls' outputs, a few bf16 ulp of the largest.
    Case wide{mx::astype(c.hidden, mx::float32), mx::astype(c.weight, mx::float32), c.targets};
    const bool bf16 = dtype == mx::bfloat16;
    const double atol = bf16 ? 3e-2 : 1e-6, rtol = bf16 ? 2e-2 : 1e-5;
    for (Reduction reduction : {Reduction::mean, Reduction::sum, Reduction::none}) {
      for (bool in_forward : {true, false}) {
        for (bool weight_grad : {true, false}) {
          SCOPED_TRACE(std::string(bf16 ? "bf16" : "f32") + ", reduction " +
                       ft::train::reduction_name(reduction) + ", in forward " +
                       std::to_string(in_forward) + ", weight grad " + std::to_string(weight_grad));
          LinearCrossEntropyOptions options{.label_smoothing = 0.1f,
                                            .chunk_size = 16,
                                            .reduction = reduction,
                                            .weight_grad = weight_grad,
                                            .gradients_in_forward = in_forward};
          auto expected =
              loss_and_grads(ft::kernels::linear_cross_entropy_composite, wide, options);
          auto actual = loss_and_grads(ft::kernels::linear_cross_entropy, c, options);
          EXPECT_EQ(actual.grad_hidden.dtype(), dtype);
          EXPECT_TRUE(ft::testing::all_close(actual.loss, expected.loss, bf16 ? 1e-2 : 1e-5,
                                             bf16 ? 1e-2 : 1e-5));
          EXPECT_TRUE(ft::testing::all_close(actual.grad_hidden, expected.grad_hidden, atol, rtol));
          if (weight_grad)
            EXPECT_TRUE(
                ft::testing::all_close(actual.grad_weight, expected.grad_weight, atol, rtol));
          else
            EXPECT_EQ(mx::max(mx::abs(mx::astype(actual.grad_weight, mx::float32))).item<float>(),
                      0.0f);
        }
      }
    }
  }
}

TEST(LinearCrossEntropy, CpuGradientsAreTheSameBitsOnEveryRun) {
  // Rows are split over threads but each is reduced by one thread in a fixed order.
  ft::testing::OnCpu on_cpu;
  auto c = make_case(300, 16, 3000, mx::float32, 17);
  LinearCrossEntropyOptions options{.chunk_size = 128, .reduction = Reduction::sum};
  auto first = loss_and_grads(ft::kernels::linear_cross_entropy, c, options);
  for (int run = 0; run < 3; ++run) {
    auto again = loss_and_grads(ft::kernels::linear_cross_entropy, c, options);
    EXPECT_TRUE(mx::array_equal(again.loss, first.loss).item<bool>());
    EXPECT_TRUE(mx::array_equal(again.grad_hidden, first.grad_hidden).item<bool>());
    EXPECT_TRUE(mx::array_equal(again.grad_weight, first.grad_weight).item<bool>());
  }
}
