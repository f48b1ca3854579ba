// attention on the CPU against MLX's scaled_dot_product_attention (whose CPU version is built
// from MLX's own matmul and softmax) and against a composite written here in float32 with
// plain ops and repeated key heads, for values and for gradients in q, k and v.
#include <gtest/gtest.h>

#include "tests/test_util.h"

#include <cmath>
#include <limits>
#include <optional>
#include <string>
#include <unordered_set>
#include <vector>

#include <mlx/fast.h>
#include <mlx/ops.h>
#include <mlx/primitives.h>
#include <mlx/random.h>
#include <mlx/transforms.h>
#include <mlx/utils.h>

#include "ft/core/error.h"
#include "ft/kernels/attention.h"
#include "ft/kernels/cpu/fused_attention.h"
#include "ft/kernels/cpu/masked_softmax.h"
#include "ft/kernels/cpu/parallel.h"

namespace mx = mlx::core;
using ft::kernels::attention;
using ft::testing::expect_error;

namespace {

const mx::Device cpu = mx::Device::cpu;

mx::array normal(const mx::Shape& shape, mx::Dtype dtype, uint64_t seed, float scale = 1.0f) {
  return mx::random::normal(shape, dtype, 0.0f, scale, mx::random::key(seed), cpu);
}

// Largest |a - b| / (atol + rtol * max|b|); <= 1 means a is within tolerance of b. NaNs
// must sit at the same places in both.
double error_ratio(const mx::array& a, const mx::array& b, double rtol, double atol) {
  auto a64 = mx::astype(a, mx::float64, cpu), b64 = mx::astype(b, mx::float64, cpu);
  auto nan_a = mx::isnan(a64, cpu), nan_b = mx::isnan(b64, cpu);
  if (!mx::array_equal(nan_a, nan_b, cpu).item<bool>())
    return std::numeric_limits<double>::infinity();
  a64 = mx::where(nan_a, mx::array(0.0), a64, cpu);
  b64 = mx::where(nan_b, mx::array(0.0), b64, cpu);
  double scale = mx::max(mx::abs(b64, cpu), cpu).item<double>();
  double err = mx::max(mx::abs(mx::subtract(a64, b64, cpu), cpu), cpu).item<double>();
  return err / (atol + rtol * scale);
}

enum class MaskKind { none, causal, bool_mask, additive, per_head_additive };

struct Case {
  std::string name;
  mx::Dtype dtype;
  int batch, heads, kv_heads, length, keys, dim;
  MaskKind mask;
};

std::string mode_of(MaskKind kind) {
  if (kind == MaskKind::none) return "";
  return kind == MaskKind::causal ? "causal" : "array";
}

// Masks whose every row keeps key 0, so that no row is fully masked.
std::optional<mx::array> make_mask(const Case& c, uint64_t seed) {
  if (c.mask == MaskKind::none || c.mask == MaskKind::causal) return std::nullopt;
  auto first = mx::equal(mx::arange(c.keys, mx::int32), mx::array(0), cpu);  // (K,)
  if (c.mask == MaskKind::bool_mask) {
    auto keep = mx::random::bernoulli(mx::array(0.7f), {c.batch, 1, c.length, c.keys},
                                      mx::random::key(seed), cpu);
    return mx::logical_or(keep, first, cpu);
  }
  mx::Shape shape = c.mask == MaskKind::additive ? mx::Shape{c.length, c.keys}
                                                 : mx::Shape{1, c.heads, c.length, c.keys};
  auto values = normal(shape, mx::float32, seed, 2.0f);
  auto drop = mx::random::bernoulli(mx::array(0.2f), shape, mx::random::key(seed + 1), cpu);
  drop = mx::logical_and(drop, mx::logical_not(first, cpu), cpu);
  values = mx::where(drop, mx::array(-std::numeric_limits<float>::infinity()), values, cpu);
  return mx::astype(values, c.dtype, cpu);
}

// The reference written here: float32 math, key heads repeated per query head, the causal
// pattern and masks as explicit where/add, MLX's convention for bool masks (dropped scores
// become the lowest finite float, so a fully dropped row averages every value).
mx::array composite(const mx::array& q, const mx::array& k, const mx::array& v, float scale,
                    const std::string& mode, const std::optional<mx::array>& mask) {
  int groups = q.shape(1) / k.shape(1), length = q.shape(2), keys = k.shape(2);
  auto qf = mx::astype(q, mx::float32, cpu);
  auto kf = mx::repeat(mx::astype(k, mx::float32, cpu), groups, 1, cpu);
  auto vf = mx::repeat(mx::astype(v, mx::float32, cpu), groups, 1, cpu);
  auto scores =
      mx::matmul(mx::multiply(qf, mx::array(scale), cpu), mx::swapaxes(kf, -1, -2, cpu), cpu);
  if (mode == "causal") {
    auto rows = mx::reshape(mx::arange(length, mx::int32), {length, 1});
    auto cols = mx::reshape(mx::arange(keys, mx::int32), {1, keys});
    auto allowed =
        mx::less_equal(cols, mx::add(rows, mx::array(std::max(0, keys - length)), cpu), cpu);
    scores = mx::where(allowed, scores, mx::array(-std::numeric_limits<float>::infinity()), cpu);
  }
  if (mask) {
    if (mask->dtype() == mx::bool_)
      scores = mx::where(*mask, scores, mx::array(mx::finfo(mx::float32).min, mx::float32), cpu);
    else
      scores = mx::add(scores, mx::astype(*mask, mx::float32, cpu), cpu);
  }
  auto out = mx::matmul(mx::softmax(scores, -1, false, cpu), vf, cpu);
  return mx::astype(out, q.dtype(), cpu);
}

using AttnFn = std::function<mx::array(const mx::array&, const mx::array&, const mx::array&)>;

// Gradients of sum(attn(q, k, v) * weight) in (q, k, v): the cotangent is not all ones.
std::vector<mx::array> grads_of(const AttnFn& f, const std::vector<mx::array>& qkv,
                                const mx::array& weight) {
  auto loss = [&](const std::vector<mx::array>& in) -> std::vector<mx::array> {
    auto y = mx::astype(f(in[0], in[1], in[2]), mx::float32, cpu);
    return {mx::sum(mx::multiply(y, weight, cpu), cpu)};
  };
  auto [value, grads] = mx::value_and_grad(loss, std::vector<int>{0, 1, 2})(qkv);
  mx::eval(grads);
  return grads;
}

// Whether a primitive named `name` produced `a` or any array it depends on (before eval).
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

class AttentionCase : public ::testing::TestWithParam<Case> {};

TEST_P(AttentionCase, ValuesAndGradientsMatchReferences) {
  const Case& c = GetParam();
  const float scale = 1.0f / std::sqrt(static_cast<float>(c.dim));
  auto q = normal({c.batch, c.heads, c.length, c.dim}, c.dtype, 1);
  auto k = normal({c.batch, c.kv_heads, c.keys, c.dim}, c.dtype, 2);
  auto v = normal({c.batch, c.kv_heads, c.keys, c.dim}, c.dtype, 3);
  auto mask = make_mask(c, 4);
  const std::string mode = mode_of(c.mask);
  const bool f32 = c.dtype == mx::float32;
  const double tol = f32 ? 2e-5 : 2e-2;

  AttnFn ours = [&](const mx::array& a, const mx::array& b, const mx::array& d) {
    return attention(a, b, d, scale, mode, mask, cpu);
  };
  AttnFn mlx = [&](const mx::array& a, const mx::array& b, const mx::array& d) {
    return mx::fast::scaled_dot_product_attention(a, b, d, scale, mode, mask, {}, false, cpu);
  };
  AttnFn plain = [&](const mx::array& a, const mx::array& b, const mx::array& d) {
    return composite(a, b, d, scale, mode, mask);
  };

  auto out = ours(q, k, v);
  const bool fused = c.mask != MaskKind::bool_mask && c.mask != MaskKind::additive &&
                     c.mask != MaskKind::per_head_additive &&
                     ft::kernels::cpu::fused_attention_supported(c.dtype, c.dim, cpu);
  EXPECT_TRUE(graph_has(out, fused ? "FusedAttention" : "CpuMaskedSoftmax"));
  auto expected_mlx = mlx(q, k, v);
  auto expected_plain = plain(q, k, v);
  mx::eval({out, expected_mlx, expected_plain});
  EXPECT_EQ(out.shape(), expected_mlx.shape());
  EXPECT_EQ(out.dtype(), c.dtype);
  EXPECT_LE(error_ratio(out, expected_mlx, tol, tol), 1.0);
  EXPECT_LE(error_ratio(out, expected_plain, tol, tol), 1.0);

  // Same inputs, same bits: each row is reduced in a fixed order whatever the thread split.
  auto again = ours(q, k, v);
  EXPECT_TRUE(mx::array_equal(out, again, cpu).item<bool>());

  auto weight = normal(out.shape(), mx::float32, 5);
  auto g_ours = grads_of(ours, {q, k, v}, weight);
  auto g_mlx = grads_of(mlx, {q, k, v}, weight);
  auto g_plain = grads_of(plain, {q, k, v}, weight);
  const double gtol = f32 ? 5e-5 : 4e-2;
  const char* names[] = {"dq", "dk", "dv"};
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(g_ours[i].shape(), (std::vector<mx::array>{q, k, v})[i].shape()) << names[i];
    EXPECT_LE(error_ratio(g_ours[i], g_mlx[i], gtol, gtol), 1.0) << names[i];
    EXPECT_LE(error_ratio(g_ours[i], g_plain[i], gtol, gtol), 1.0) << names[i];
  }
}

std::vector<Case> cases() {
  std::vector<Case> all;
  for (auto dtype : {mx::float32, mx::bfloat16}) {
    std::string d = dtype == mx::float32 ? "f32" : "bf16";
    all.push_back({d + "_causal_gqa2_square", dtype, 2, 8, 4, 37, 37, 24, MaskKind::causal});
    all.push_back({d + "_causal_mqa_cached", dtype, 1, 8, 1, 5, 29, 24, MaskKind::causal});
    all.push_back({d + "_causal_one_query", dtype, 2, 8, 4, 1, 23, 40, MaskKind::causal});
    all.push_back({d + "_no_mask_mha", dtype, 2, 4, 4, 19, 33, 24, MaskKind::none});
    all.push_back({d + "_bool_mask_gqa2", dtype, 2, 8, 4, 13, 21, 24, MaskKind::bool_mask});
    all.push_back({d + "_additive_mask_mqa", dtype, 1, 8, 1, 11, 27, 24, MaskKind::additive});
    all.push_back(
        {d + "_per_head_mask_gqa2", dtype, 2, 8, 4, 9, 17, 24, MaskKind::per_head_additive});
  }
  // Long rows: several threads' worth and the 16-lane loops with a tail.
  all.push_back({"f32_causal_long", mx::float32, 1, 4, 2, 300, 300, 16, MaskKind::causal});
  // Head dimensions that cpu::fused_attention takes (float32, a multiple of 16): query and
  // key blocks that are partial (lengths around its 48-row and 64-key blocks), several
  // blocks, cached keys, a single query, no mask.
  all.push_back({"fused_causal_gqa2", mx::float32, 2, 8, 4, 131, 131, 32, MaskKind::causal});
  all.push_back({"fused_causal_cached", mx::float32, 1, 4, 1, 50, 197, 64, MaskKind::causal});
  all.push_back({"fused_causal_one_query", mx::float32, 2, 4, 2, 1, 70, 16, MaskKind::causal});
  all.push_back({"fused_causal_short", mx::float32, 1, 2, 2, 5, 5, 48, MaskKind::causal});
  all.push_back({"fused_no_mask", mx::float32, 2, 6, 3, 29, 100, 32, MaskKind::none});
  return all;
}

INSTANTIATE_TEST_SUITE_P(Cpu, AttentionCase, ::testing::ValuesIn(cases()),
                         [](const auto& info) { return info.param.name; });

}  // namespace

TEST(Attention, FullyMaskedBoolRowAveragesValuesLikeMlx) {
  auto q = normal({1, 2, 3, 8}, mx::float32, 1);
  auto k = normal({1, 2, 5, 8}, mx::float32, 2);
  auto v = normal({1, 2, 5, 8}, mx::float32, 3);
  // Row 1 keeps no key.
  auto mask = mx::array({true, false, true, true, false, false, false, false, false, false, true,
                         true, true, true, true},
                        {3, 5});
  auto out = attention(q, k, v, 0.5f, "array", mask, cpu);
  auto expected =
      mx::fast::scaled_dot_product_attention(q, k, v, 0.5f, "array", mask, {}, false, cpu);
  auto row = mx::slice(out, {0, 0, 1, 0}, {1, 2, 2, 8}, cpu);  // (1, 2, 1, 8)
  auto mean_v = mx::mean(v, std::vector<int>{2}, true, cpu);   // (1, 2, 1, 8)
  EXPECT_LE(error_ratio(row, mean_v, 1e-5, 1e-6), 1.0);
  EXPECT_LE(error_ratio(out, expected, 1e-5, 1e-6), 1.0);
}

TEST(Attention, FullyMaskedAdditiveRowIsNanLikeMlx) {
  auto q = normal({1, 1, 2, 8}, mx::float32, 1);
  auto k = normal({1, 1, 4, 8}, mx::float32, 2);
  auto v = normal({1, 1, 4, 8}, mx::float32, 3);
  const float inf = std::numeric_limits<float>::infinity();
  auto mask = mx::array({0.0f, -inf, 1.0f, 0.5f, -inf, -inf, -inf, -inf}, {2, 4});
  auto out = attention(q, k, v, 0.5f, "array", mask, cpu);
  auto expected =
      mx::fast::scaled_dot_product_attention(q, k, v, 0.5f, "array", mask, {}, false, cpu);
  auto nan = mx::isnan(out, cpu);
  EXPECT_FALSE(mx::any(mx::slice(nan, {0, 0, 0, 0}, {1, 1, 1, 8}, cpu), cpu).item<bool>());
  EXPECT_TRUE(mx::all(mx::slice(nan, {0, 0, 1, 0}, {1, 1, 2, 8}, cpu), cpu).item<bool>());
  EXPECT_LE(error_ratio(out, expected, 1e-5, 1e-6), 1.0);
}

TEST(MaskedSoftmax, MatchesHandComputedCausalRows) {
  // Two queries aligned to the end of three keys: query 0 sees keys 0-1, query 1 all three.
  auto scores = mx::array({1.0f, 2.0f, 5.0f, 0.0f, std::log(2.0f), std::log(5.0f)}, {2, 3});
  auto p = ft::kernels::cpu::masked_softmax(scores, ft::kernels::cpu::CausalMask{2, 1},
                                            std::nullopt, mx::default_stream(cpu));
  auto expected =
      mx::array({1.0f / (1.0f + std::exp(1.0f)), std::exp(1.0f) / (1.0f + std::exp(1.0f)), 0.0f,
                 1.0f / 8.0f, 2.0f / 8.0f, 5.0f / 8.0f},
                {2, 3});
  EXPECT_LE(error_ratio(p, expected, 1e-6, 1e-7), 1.0);
}

TEST(Attention, RejectsBadArguments) {
  auto q = normal({1, 6, 3, 8}, mx::float32, 1);
  auto k = normal({1, 4, 5, 8}, mx::float32, 2);
  auto k2 = normal({1, 2, 5, 8}, mx::float32, 2);
  expect_error([&] { attention(q, k, k, 1.0f, "", std::nullopt, cpu); }, "multiple of key heads");
  expect_error([&] { attention(q, k2, k2, 1.0f, "sliding", std::nullopt, cpu); }, "mask_mode");
  expect_error([&] { attention(q, k2, k2, 1.0f, "array", std::nullopt, cpu); }, "mask array");
  expect_error([&] { attention(q, k2, mx::astype(k2, mx::bfloat16), 1.0f, "", std::nullopt, cpu); },
               "one dtype");
  expect_error(
      [&] {
        attention(q, k2, k2, 1.0f, "array", mx::ones({1, 4, 3, 5}, mx::bool_), cpu);
      },
      "head axis");
}

// cpu::fused_attention reads strided views in place (and copies those whose last axis is
// strided): the same bits as from contiguous inputs, for the values and the gradients, and
// for any thread count.
TEST(FusedAttention, StridedInputsAndThreadCountsGiveTheSameBits) {
  namespace kcpu = ft::kernels::cpu;
  if (!kcpu::fused_attention_supported(mx::float32, 32, cpu))
    GTEST_SKIP() << "needs an x86-64 processor with AVX2 and FMA";
  ft::testing::OnCpu on_cpu;
  const auto s = mx::default_stream(cpu);
  // q as the model makes it: (B, L, H, D) seen as (B, H, L, D); k with its last axis
  // strided; v contiguous.
  auto q_rows = normal({2, 70, 4, 32}, mx::float32, 1);
  auto k_t = normal({2, 2, 32, 70}, mx::float32, 2);
  auto v = normal({2, 2, 70, 32}, mx::float32, 3);
  auto q = mx::transpose(q_rows, {0, 2, 1, 3});
  auto k = mx::swapaxes(k_t, 2, 3);
  auto weight = normal({2, 4, 70, 32}, mx::float32, 4);
  const int threads_before = kcpu::num_threads();
  auto run = [&](const mx::array& a, const mx::array& b, const mx::array& c, int threads) {
    kcpu::set_num_threads(threads);
    AttnFn f = [&](const mx::array& x, const mx::array& y, const mx::array& z) {
      return kcpu::fused_attention(x, y, z, 0.3f, true, s);
    };
    auto out = f(a, b, c);
    auto grads = grads_of(f, {a, b, c}, weight);
    mx::eval(out);
    grads.insert(grads.begin(), out);
    return grads;
  };
  auto strided = run(q, k, v, 2);
  auto contiguous = run(mx::contiguous(q), mx::contiguous(k), v, 1);
  auto threads = run(q, k, v, 3);
  kcpu::set_num_threads(threads_before);
  for (int i = 0; i < 4; ++i) {
    EXPECT_TRUE(mx::array_equal(strided[i], contiguous[i], cpu).item<bool>()) << i;
    EXPECT_TRUE(mx::array_equal(strided[i], threads[i], cpu).item<bool>()) << i;
  }
  auto expected =
      mx::fast::scaled_dot_product_attention(q, k, v, 0.3f, "causal", std::nullopt, {}, false, cpu);
  EXPECT_LE(error_ratio(strided[0], expected, 2e-5, 2e-5), 1.0);
}

TEST(FusedAttention, RejectsWhatItDoesNotTake) {
  namespace kcpu = ft::kernels::cpu;
  const auto s = mx::default_stream(cpu);
  auto q = normal({1, 4, 3, 32}, mx::float32, 1);
  auto k = normal({1, 2, 5, 32}, mx::float32, 2);
  expect_error(
      [&] {
        kcpu::fused_attention(q, normal({1, 3, 5, 32}, mx::float32, 2),
                              normal({1, 3, 5, 32}, mx::float32, 2), 1.0f, true, s);
      },
      "multiple of key heads");
  expect_error(
      [&] {
        kcpu::fused_attention(q, k, normal({1, 2, 6, 32}, mx::float32, 3), 1.0f, true, s);
      },
      "do not fit");
  expect_error(
      [&] {
        kcpu::fused_attention(normal({1, 4, 3, 24}, mx::float32, 1),
                              normal({1, 2, 5, 24}, mx::float32, 2),
                              normal({1, 2, 5, 24}, mx::float32, 2), 1.0f, true, s);
      },
      "multiple of 16");
  expect_error(
      [&] {
        kcpu::fused_attention(q, mx::zeros({1, 2, 0, 32}), mx::zeros({1, 2, 0, 32}), 1.0f, false,
                              s);
      },
      "at least one key");
}
