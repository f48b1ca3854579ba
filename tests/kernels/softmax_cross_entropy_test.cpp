// The CPU kernels' exp against std::exp, and the fused softmax cross-entropy primitive
// against the composite train::cross_entropy and its gradient through mx::vjp.
#include <gtest/gtest.h>

#include "tests/test_util.h"

#include <bit>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include <mlx/ops.h>
#include <mlx/random.h>
#include <mlx/transforms.h>

#include "ft/core/error.h"
#include "ft/kernels/cpu/avx2.h"
#include "ft/kernels/cpu/parallel.h"
#include "ft/kernels/cpu/softmax_cross_entropy.h"
#include "ft/kernels/cpu/vec_math.h"
#include "ft/train/losses.h"

namespace mx = mlx::core;
namespace cpu = ft::kernels::cpu;

TEST(VecMath, ExpMatchesStdExpOverTheWholeFloatRange) {
  // Every 97th float bit pattern from -inf to +inf, both signs: about 88 million values.
  double worst = 0;
  float worst_x = 0;
  for (uint32_t sign : {0u, 0x80000000u}) {
    for (uint32_t bits = 0; bits <= 0x7f800000u; bits += 97) {
      float x = std::bit_cast<float>(bits | sign);
      double expected = std::exp(static_cast<double>(x));
      float actual = cpu::exp_approx(x);
      ASSERT_FALSE(std::isnan(actual)) << "x = " << x;
      if (expected >= std::numeric_limits<float>::min() && expected <= 3.4e38) {
        double rel = std::abs(actual - expected) / expected;
        if (rel > worst) worst = rel, worst_x = x;
      } else {
        // Subnormal results: an absolute error of a few subnormal steps; overflow: inf.
        if (expected > 3.4e38)
          ASSERT_TRUE(actual > 3.4e38f) << "x = " << x;
        else
          ASSERT_NEAR(actual, expected, 4e-45) << "x = " << x;
      }
    }
  }
  EXPECT_LT(worst, 2.5e-7) << "worst at x = " << worst_x;
  float inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(cpu::exp_approx(-inf), 0.0f);
  EXPECT_EQ(cpu::exp_approx(inf), inf);
  EXPECT_EQ(cpu::exp_approx(0.0f), 1.0f);
  EXPECT_TRUE(std::isnan(cpu::exp_approx(std::numeric_limits<float>::quiet_NaN())));
}

#if FT_AVX2_KERNELS
// exp8 and exp8_normal of 8 floats.
FT_AVX2 void exp8_both(const float* x, float* exp, float* exp_normal) {
  const __m256 v = _mm256_loadu_ps(x);
  _mm256_storeu_ps(exp, cpu::exp8(v));
  _mm256_storeu_ps(exp_normal, cpu::exp8_normal(v));
}
#endif

TEST(VecMath, Exp8MatchesStdExpAndExp8NormalMatchesItDownToFltMin) {
#if FT_AVX2_KERNELS
  if (!cpu::avx2_supported()) GTEST_SKIP() << "no AVX2";
  const float log_min = -87.33654475f;
  // Every 89th float bit pattern of both signs, 8 at a time, and the edges.
  std::vector<float> xs;
  for (uint32_t sign : {0u, 0x80000000u})
    for (uint32_t bits = 0; bits <= 0x7f800000u; bits += 89)
      xs.push_back(std::bit_cast<float>(bits | sign));
  const float inf = std::numeric_limits<float>::infinity();
  for (float x : {-inf, log_min, std::nextafter(log_min, -inf), std::nextafter(log_min, inf), 88.0f,
                  std::numeric_limits<float>::quiet_NaN()})
    xs.push_back(x);
  while (xs.size() % 8) xs.push_back(0.0f);
  int64_t normal_same = 0;
  for (size_t i = 0; i < xs.size(); i += 8) {
    float exp[8], exp_normal[8];
    exp8_both(xs.data() + i, exp, exp_normal);
    for (int k = 0; k < 8; ++k) {
      const float x = xs[i + k];
      if (std::isnan(x)) {
        ASSERT_TRUE(std::isnan(exp[k]) && std::isnan(exp_normal[k]));
        continue;
      }
      const double expected = std::exp(static_cast<double>(x));
      if (expected >= std::numeric_limits<float>::min() && expected <= 3.4e38) {
        ASSERT_LT(std::abs(exp[k] - expected) / expected, 2.5e-7) << "x = " << x;
      }
      if (x > 88.0f) continue;  // beyond exp8_normal's domain
      if (x < log_min) {
        ASSERT_EQ(exp_normal[k], 0.0f) << "x = " << x;
      } else {
        ASSERT_EQ(std::bit_cast<uint32_t>(exp_normal[k]), std::bit_cast<uint32_t>(exp[k]))
            << "x = " << x;
        ++normal_same;
      }
    }
  }
  EXPECT_GT(normal_same, 1000000);  // the sweep crossed the whole normal range
#else
  GTEST_SKIP() << "no AVX2 kernels in this build";
#endif
}

TEST(VecMath, Bf16RoundsToNearestEven) {
  // 1 + 2^-8 lies halfway between bf16 1 and 1 + 2^-7: ties go to the even mantissa (1).
  EXPECT_EQ(cpu::float_to_bf16(1.0f + 0x1p-8f), 0x3f80);
  EXPECT_EQ(cpu::float_to_bf16(1.0f + 3 * 0x1p-8f), 0x3f82);  // tie, rounds up to even
  EXPECT_EQ(cpu::float_to_bf16(1.0f + 0x1p-8f + 0x1p-20f), 0x3f81);
  EXPECT_EQ(cpu::bf16_to_float(0x3f81), 1.0f + 0x1p-7f);
  EXPECT_TRUE(std::isnan(cpu::bf16_to_float(cpu::float_to_bf16(std::nanf("")))));
  EXPECT_EQ(cpu::float_to_bf16(std::numeric_limits<float>::infinity()), 0x7f80);
}

TEST(Parallel, RangesCoverEveryIndexOnce) {
  for (int64_t n : {0, 1, 5, 1001}) {
    std::vector<int> hits(n, 0);
    cpu::parallel_for(n, 1, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) hits[i] += 1;
    });
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[i], 1) << "n " << n << ", i " << i;
  }
  EXPECT_THROW(cpu::parallel_for(10, 1,
                                 [](int64_t begin, int64_t) {
                                   if (begin > 0 || cpu::num_threads() == 1)
                                     throw std::runtime_error("range");
                                 }),
               std::runtime_error);
}

namespace {

struct LogitsCase {
  mx::array logits;   // (N, V)
  mx::array targets;  // (N,), every fourth ignored
};

LogitsCase make_logits(int n, int v, mx::Dtype dtype, uint64_t seed) {
  auto keys = mx::random::split(mx::random::key(seed), 2);
  // Spread like real logits, with a few very negative entries to probe the exp's range.
  auto logits = mx::multiply(mx::random::normal({n, v}, mx::float32, 0, 1, mx::take(keys, 0, 0)),
                             mx::array(4.0f));
  logits = mx::where(mx::equal(mx::remainder(mx::arange(v), mx::array(17)), mx::array(5)),
                     mx::array(-200.0f), logits);
  auto targets = mx::random::randint(0, v, {n}, mx::int32, mx::take(keys, 1, 0));
  targets = mx::where(mx::equal(mx::remainder(mx::arange(n), mx::array(4)), mx::array(1)),
                      mx::array(-100), targets);
  LogitsCase c{mx::astype(logits, dtype), targets};
  mx::eval({c.logits, c.targets});
  return c;
}

// The composite: per-token train::cross_entropy and, through mx::vjp with a unit cotangent
// per row, the gradient w.r.t. the logits.
std::pair<mx::array, mx::array> composite(const LogitsCase& c, float smoothing) {
  ft::train::CrossEntropyOptions options{-100, smoothing, ft::train::Reduction::none};
  auto [outputs, grads] = mx::vjp(
      [&](const std::vector<mx::array>& in) {
        return std::vector<mx::array>{ft::train::cross_entropy(in[0], c.targets, options)};
      },
      {mx::astype(c.logits, mx::float32)}, {mx::ones({c.logits.shape(0)}, mx::float32)});
  return {outputs[0], grads[0]};
}

}  // namespace

TEST(SoftmaxCrossEntropy, MatchesTheCompositeLossAndGradient) {
  ft::testing::OnCpu on_cpu;
  // 37 rows split over threads unevenly; 1000 and 33 classes leave a tail after 16 lanes.
  for (int vocab : {1000, 33}) {
    for (float smoothing : {0.0f, 0.1f}) {
      SCOPED_TRACE("vocab " + std::to_string(vocab) + ", smoothing " + std::to_string(smoothing));
      auto c = make_logits(37, vocab, mx::float32, vocab);
      auto [loss, dlogits] = composite(c, smoothing);
      auto fused = cpu::softmax_cross_entropy(c.logits, c.targets, {-100, smoothing, true});
      ASSERT_EQ(fused.size(), 2u);
      EXPECT_EQ(fused[0].dtype(), mx::float32);
      EXPECT_EQ(fused[1].dtype(), mx::float32);
      EXPECT_TRUE(ft::testing::all_close(fused[0], loss, 1e-5, 1e-6));
      EXPECT_TRUE(ft::testing::all_close(fused[1], dlogits, 1e-7, 1e-5));
      // Ignored rows: loss and gradient exactly zero; others: a real loss.
      EXPECT_EQ(mx::take(fused[0], 1).item<float>(), 0.0f);
      EXPECT_EQ(mx::max(mx::abs(mx::take(fused[1], 5, 0))).item<float>(), 0.0f);
      EXPECT_GT(mx::take(fused[0], 2).item<float>(), 0.1f);
      // The loss alone matches the loss with the gradient, bit for bit.
      auto loss_only = cpu::softmax_cross_entropy(c.logits, c.targets, {-100, smoothing, false});
      ASSERT_EQ(loss_only.size(), 1u);
      EXPECT_TRUE(mx::array_equal(loss_only[0], fused[0]).item<bool>());
    }
  }
}

TEST(SoftmaxCrossEntropy, LowPrecisionLogitsComputeInF32) {
  ft::testing::OnCpu on_cpu;
  for (mx::Dtype dtype : {mx::bfloat16, mx::float16}) {
    auto c = make_logits(21, 300, dtype, 4);
    // The composite widens the same rounded logits to f32 first, so only the output's
    // rounding to the storage dtype differs.
    auto [loss, dlogits] = composite(c, 0.05f);
    auto fused = cpu::softmax_cross_entropy(c.logits, c.targets, {-100, 0.05f, true});
    EXPECT_EQ(fused[1].dtype(), dtype);
    EXPECT_TRUE(ft::testing::all_close(fused[0], loss, 1e-5, 1e-6));
    EXPECT_TRUE(ft::testing::all_close(fused[1], dlogits, 1e-5, 1e-2));
  }
}

TEST(SoftmaxCrossEntropy, StridedLogitsAndOtherTargetDtypes) {
  ft::testing::OnCpu on_cpu;
  auto c = make_logits(64, 24, mx::float32, 9);
  auto transposed = mx::transpose(mx::reshape(c.logits, {24, 64}));  // (64, 24), column-major
  auto targets64 = mx::astype(c.targets, mx::int64);
  auto fused = cpu::softmax_cross_entropy(transposed, targets64);
  auto expected = composite({mx::contiguous(transposed), c.targets}, 0.0f);
  EXPECT_TRUE(ft::testing::all_close(fused[0], expected.first, 1e-5, 1e-6));
  EXPECT_TRUE(ft::testing::all_close(fused[1], expected.second, 1e-7, 1e-5));
}

TEST(SoftmaxCrossEntropy, OutOfRangeTargetGivesNaNAndBadInputIsAnError) {
  ft::testing::OnCpu on_cpu;
  auto logits = mx::zeros({2, 4});
  auto loss = cpu::softmax_cross_entropy(logits, mx::array({1, 4}))[0];
  EXPECT_NEAR(mx::take(loss, 0).item<float>(), std::log(4.0f), 1e-6);
  EXPECT_TRUE(std::isnan(mx::take(loss, 1).item<float>()));
  EXPECT_THROW(cpu::softmax_cross_entropy(mx::zeros({2, 4}, mx::float64), mx::array({1, 2})),
               ft::Error);
  EXPECT_THROW(cpu::softmax_cross_entropy(logits, mx::array({1, 2, 3})), ft::Error);
  EXPECT_THROW(cpu::softmax_cross_entropy(logits, mx::array({1.0f, 2.0f})), ft::Error);
}
