// The one-pass head cross-entropy (kernels/cpu/head_cross_entropy.h) against the composite:
// the matmul, train::cross_entropy per token, and its gradient w.r.t. hidden through mx::vjp.
#include <gtest/gtest.h>

#include "tests/test_util.h"

#include <cmath>
#include <string>
#include <vector>

#include <mlx/ops.h>
#include <mlx/random.h>
#include <mlx/transforms.h>

#include "ft/core/error.h"
#include "ft/kernels/cpu/head_cross_entropy.h"
#include "ft/kernels/cpu/parallel.h"
#include "ft/train/losses.h"

namespace mx = mlx::core;
namespace cpu = ft::kernels::cpu;
using ft::testing::all_close;

namespace {

struct Case {
  mx::array hidden;   // (N, H)
  mx::array weight;   // (V, H)
  mx::array targets;  // (N,): every seventh ignored
};

Case make_case(int n, int h, int v, uint64_t seed) {
  auto keys = mx::random::split(mx::random::key(seed), 3);
  auto hidden = mx::random::normal({n, h}, mx::float32, 0, 1, mx::take(keys, 0, 0));
  // Logits of a few units, so that the softmax is far from uniform.
  auto weight = mx::random::normal({v, h}, mx::float32, 0, 3.0f / std::sqrt(float(h)),
                                   mx::take(keys, 1, 0));
  auto targets = mx::random::randint(0, v, {n}, mx::int32, mx::take(keys, 2, 0));
  targets = mx::where(mx::equal(mx::remainder(mx::arange(n), mx::array(7)), mx::array(2)),
                      mx::array(-100), targets);
  Case c{hidden, weight, targets};
  mx::eval({c.hidden, c.weight, c.targets});
  return c;
}

// The composite's per-token losses and the gradient of their sum w.r.t. hidden.
std::pair<mx::array, mx::array> reference(const Case& c, float smoothing) {
  ft::train::CrossEntropyOptions options{-100, smoothing, ft::train::Reduction::none};
  auto losses = [&](const mx::array& h) {
    return ft::train::cross_entropy(mx::matmul(h, mx::transpose(c.weight)), c.targets, options);
  };
  auto [values, grads] = mx::vjp(
      [&](const std::vector<mx::array>& p) { return std::vector<mx::array>{mx::sum(losses(p[0]))}; },
      {c.hidden}, {mx::array(1.0f)});
  auto loss = losses(c.hidden);
  mx::eval({loss, grads[0]});
  return {loss, grads[0]};
}

bool supported() {
  return cpu::head_cross_entropy_supported(mx::float32, mx::float32, 16, mx::Device::cpu);
}

}  // namespace

TEST(HeadCrossEntropy, MatchesTheCompositeLossAndGradient) {
  if (!supported()) GTEST_SKIP() << "needs an x86-64 processor with AVX2 and FMA";
  ft::testing::OnCpu on_cpu;
  // Shapes around the kernel's sizes: fewer W rows than a tile (5), a partial last tile and
  // panel (200), three stretches of W for H = 256 (4000); rows fewer than a group, a partial
  // block, several blocks.
  struct Size {
    int n, h, v;
  };
  // W kept packed between calls, and packed a stretch at a time (budget 0).
  const int64_t budget = cpu::set_head_cross_entropy_packing_budget(0);
  cpu::set_head_cross_entropy_packing_budget(budget);
  for (int64_t packing : {budget, int64_t{0}})
  for (Size size : {Size{1, 16, 5}, Size{37, 32, 200}, Size{130, 48, 1000}, Size{100, 256, 4000}})
    for (float smoothing : {0.0f, 0.15f}) {
      cpu::set_head_cross_entropy_packing_budget(packing);
      SCOPED_TRACE("N " + std::to_string(size.n) + " H " + std::to_string(size.h) + " V " +
                   std::to_string(size.v) + " smoothing " + std::to_string(smoothing) +
                   " packing budget " + std::to_string(packing));
      auto c = make_case(size.n, size.h, size.v, size.n + size.v);
      auto [loss, grad] = reference(c, smoothing);
      auto out = cpu::head_cross_entropy(c.hidden, c.weight, c.targets, {-100, smoothing, true});
      auto loss_only =
          cpu::head_cross_entropy(c.hidden, c.weight, c.targets, {-100, smoothing, false});
      ASSERT_EQ(out.size(), 2u);
      ASSERT_EQ(loss_only.size(), 1u);
      EXPECT_EQ(out[1].dtype(), mx::float32);
      EXPECT_TRUE(all_close(out[0], loss, 1e-5, 1e-5));
      EXPECT_TRUE(all_close(out[1], grad, 1e-5, 1e-5));  // entries of order 1
      EXPECT_TRUE(mx::array_equal(loss_only[0], out[0]).item<bool>());
    }
  cpu::set_head_cross_entropy_packing_budget(budget);
}

// Logits that grow along the vocabulary (W's rows scaled from 0.1 to 30), so that the rows'
// maxima keep rising from panel to panel by far more than the reference's headroom, and
// beyond what exp could take without moving it: every reference move and rescale of the
// running sums is exercised.
TEST(HeadCrossEntropy, LogitsThatGrowAlongTheVocabulary) {
  if (!supported()) GTEST_SKIP() << "needs an x86-64 processor with AVX2 and FMA";
  ft::testing::OnCpu on_cpu;
  for (float smoothing : {0.0f, 0.1f}) {
    auto c = make_case(50, 64, 3000, 11);
    auto ramp = mx::reshape(mx::linspace(0.1f, 30.0f, 3000), {3000, 1});
    c.weight = mx::multiply(c.weight, ramp);
    mx::eval(c.weight);
    auto [loss, grad] = reference(c, smoothing);
    EXPECT_GT(mx::max(mx::abs(mx::matmul(c.hidden, mx::transpose(c.weight)))).item<float>(), 100);
    auto out = cpu::head_cross_entropy(c.hidden, c.weight, c.targets, {-100, smoothing, true});
    EXPECT_TRUE(all_close(out[0], loss, 1e-4, 1e-5));
    EXPECT_TRUE(all_close(out[1], grad, 1e-4, 1e-4));
  }
}

// The packed W kept between calls (Note [The packed head]) follows the weight: another W gets
// its own results, the first W again its first bits, and packing a stretch at a time in every
// call (a budget of 0) gives the same bits as the kept packing.
TEST(HeadCrossEntropy, KeptPackingFollowsTheWeight) {
  if (!supported()) GTEST_SKIP() << "needs an x86-64 processor with AVX2 and FMA";
  ft::testing::OnCpu on_cpu;
  auto c = make_case(40, 256, 4000, 3);
  const cpu::HeadCrossEntropyOptions options{-100, 0.0f, true};
  auto first = cpu::head_cross_entropy(c.hidden, c.weight, c.targets, options);
  mx::eval(first);
  Case doubled = c;
  doubled.weight = mx::multiply(c.weight, mx::array(2.0f));
  mx::eval(doubled.weight);
  auto [loss, grad] = reference(doubled, 0.0f);
  auto second = cpu::head_cross_entropy(doubled.hidden, doubled.weight, doubled.targets, options);
  EXPECT_TRUE(all_close(second[0], loss, 1e-5, 1e-5));
  EXPECT_TRUE(all_close(second[1], grad, 1e-5, 1e-5));
  auto again = cpu::head_cross_entropy(c.hidden, c.weight, c.targets, options);
  EXPECT_TRUE(mx::array_equal(again[0], first[0]).item<bool>());
  EXPECT_TRUE(mx::array_equal(again[1], first[1]).item<bool>());
  const int64_t budget = cpu::set_head_cross_entropy_packing_budget(0);
  auto unkept = cpu::head_cross_entropy(c.hidden, c.weight, c.targets, options);
  mx::eval(unkept);
  cpu::set_head_cross_entropy_packing_budget(budget);
  EXPECT_TRUE(mx::array_equal(unkept[0], first[0]).item<bool>());
  EXPECT_TRUE(mx::array_equal(unkept[1], first[1]).item<bool>());
  EXPECT_EQ(cpu::head_cross_entropy_packed_bytes(4000, 256), (4002 * 256 + 4000 * 258) * 4u);
}

TEST(HeadCrossEntropy, IgnoredRowsGetZeroAndOutOfRangeTargetsNaN) {
  if (!supported()) GTEST_SKIP() << "needs an x86-64 processor with AVX2 and FMA";
  ft::testing::OnCpu on_cpu;
  auto c = make_case(4, 16, 30, 3);
  auto targets = mx::array({-100, 3, 30, -1}, mx::int32);  // ignored, valid, out of range twice
  auto out = cpu::head_cross_entropy(c.hidden, c.weight, targets, {});
  auto loss = out[0];
  EXPECT_EQ(mx::take(loss, 0).item<float>(), 0.0f);
  EXPECT_TRUE(std::isfinite(mx::take(loss, 1).item<float>()));
  EXPECT_TRUE(std::isnan(mx::take(loss, 2).item<float>()));
  EXPECT_TRUE(std::isnan(mx::take(loss, 3).item<float>()));
  EXPECT_EQ(mx::max(mx::abs(mx::take(out[1], 0, 0))).item<float>(), 0.0f);
  // Every row ignored: zeros, not NaN.
  auto none = cpu::head_cross_entropy(c.hidden, c.weight, mx::full({4}, -100, mx::int32), {});
  EXPECT_EQ(mx::max(mx::abs(none[0])).item<float>(), 0.0f);
  EXPECT_EQ(mx::max(mx::abs(none[1])).item<float>(), 0.0f);
}

TEST(HeadCrossEntropy, SameBitsForAnyThreadCountAndSplitOfTheRows) {
  if (!supported()) GTEST_SKIP() << "needs an x86-64 processor with AVX2 and FMA";
  ft::testing::OnCpu on_cpu;
  auto c = make_case(300, 32, 700, 5);
  auto run = [&](int threads, int first, int last) {
    cpu::set_num_threads(threads);
    auto rows = [&](const mx::array& a) {
      mx::Shape lo(a.ndim(), 0), hi = a.shape();
      lo[0] = first;
      hi[0] = last;
      return mx::slice(a, lo, hi);
    };
    auto out = cpu::head_cross_entropy(rows(c.hidden), c.weight, rows(c.targets), {});
    mx::eval(out);
    return out;
  };
  auto one = run(1, 0, 300);
  auto three = run(3, 0, 300);
  auto part = run(2, 100, 250);
  cpu::set_num_threads(ft::kernels::cpu::num_threads());
  EXPECT_TRUE(mx::array_equal(one[0], three[0]).item<bool>());
  EXPECT_TRUE(mx::array_equal(one[1], three[1]).item<bool>());
  EXPECT_TRUE(mx::array_equal(mx::slice(one[0], {100}, {250}), part[0]).item<bool>());
  EXPECT_TRUE(mx::array_equal(mx::slice(one[1], {100, 0}, {250, 32}), part[1]).item<bool>());
}

TEST(HeadCrossEntropy, UnsupportedInputIsAnError) {
  ft::testing::OnCpu on_cpu;
  auto c = make_case(4, 16, 30, 3);
  EXPECT_FALSE(cpu::head_cross_entropy_supported(mx::float32, mx::float32, 12, mx::Device::cpu));
  EXPECT_FALSE(
      cpu::head_cross_entropy_supported(mx::bfloat16, mx::float32, 16, mx::Device::cpu));
  ft::testing::expect_error(
      [&] { cpu::head_cross_entropy(mx::zeros({4, 12}), mx::zeros({30, 12}), c.targets, {}); },
      "multiple of 16");
  ft::testing::expect_error(
      [&] { cpu::head_cross_entropy(c.hidden, mx::zeros({30, 32}), c.targets, {}); },
      "features");
  ft::testing::expect_error(
      [&] { cpu::head_cross_entropy(c.hidden, c.weight, mx::zeros({3}, mx::int32), {}); },
      "rows");
  ft::testing::expect_error(
      [&] { cpu::head_cross_entropy(c.hidden, c.weight, mx::zeros({4}), {}); }, "integer");
}
