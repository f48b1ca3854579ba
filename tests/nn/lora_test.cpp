#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <set>

#include <mlx/ops.h>
#include <mlx/random.h>
#include <mlx/transforms.h>

#include "ft/core/error.h"
#include "ft/nn/lora.h"
#include "lora_test_util.h"
#include "nn_test_util.h"

namespace mx = mlx::core;
using ft::nn::DoRALinear;
using ft::nn::Linear;
using ft::nn::LoRALinear;
using ft::nn::QuantizedLinear;
using ft_test::max_abs;
using ft_test::max_abs_diff;
using ft_test::randn;

namespace {

constexpr int kIn = 64, kOut = 32, kRank = 4;

std::shared_ptr<Linear> make_base(uint64_t seed, bool bias = true) {
  return std::make_shared<Linear>(kIn, kOut, bias, mx::random::key(seed));
}

// Sets A and B to random values so the adapter's terms show.
void randomize_adapter(LoRALinear& lora, uint64_t seed) {
  lora.update(ft::ParamMap{{"lora_A", randn({kRank, kIn}, seed, 0.3f)},
                           {"lora_B", randn({kOut, kRank}, seed + 1, 0.3f)}});
}

mx::array t(const mx::array& a) {
  return mx::transpose(a);
}

// x W^T + b + s (x A^T) B^T, written out.
mx::array lora_reference(const mx::array& x, const mx::array& w, const mx::array& b,
                         const mx::array& a, const mx::array& bb, float s) {
  auto base = mx::add(mx::matmul(x, t(w)), b);
  return mx::add(base, mx::multiply(mx::array(s), mx::matmul(mx::matmul(x, t(a)), t(bb))));
}

// m / ||W + s B A||_row * x (W + s B A)^T + b.
mx::array dora_reference(const mx::array& x, const mx::array& w, const mx::array& b,
                         const mx::array& a, const mx::array& bb, const mx::array& m, float s) {
  auto adapted = mx::add(w, mx::multiply(mx::array(s), mx::matmul(bb, a)));
  auto norms = mx::sqrt(mx::sum(mx::square(adapted), 1));
  return mx::add(mx::multiply(mx::divide(m, norms), mx::matmul(x, t(adapted))), b);
}

// The size of the largest float32 array among y and everything it is computed from.
size_t largest_float32_in_graph(const mx::array& y) {
  size_t largest = 0;
  std::vector<mx::array> todo{y};
  std::set<std::uintptr_t> seen;
  while (!todo.empty()) {
    mx::array a = todo.back();
    todo.pop_back();
    if (!seen.insert(a.id()).second) continue;
    if (a.dtype() == mx::float32) largest = std::max(largest, a.size());
    for (const auto& in : a.inputs()) todo.push_back(in);
  }
  return largest;
}

}  // namespace

TEST(LoRALinear, FreshAdapterEqualsBaseAndNamesFollowTheBase) {
  auto base = make_base(1);
  LoRALinear lora(base, kRank, 16.0f, mx::random::key(2));
  EXPECT_EQ(lora.parameters().names(),
            (std::vector<std::string>{"weight", "bias", "lora_A", "lora_B"}));
  EXPECT_EQ(lora.trainable_parameters().names(), (std::vector<std::string>{"lora_A", "lora_B"}));
  EXPECT_EQ(lora.lora_A().shape(), (mx::Shape{kRank, kIn}));
  EXPECT_EQ(lora.lora_B().shape(), (mx::Shape{kOut, kRank}));
  EXPECT_EQ(max_abs(lora.lora_B()), 0.0f);
  // kaiming_uniform(a = sqrt(5)) on fan_in = in: U(-1/sqrt(in), 1/sqrt(in)).
  float bound = 1.0f / std::sqrt(static_cast<float>(kIn));
  EXPECT_LE(max_abs(lora.lora_A()), bound);
  EXPECT_GT(max_abs(lora.lora_A()), 0.9f * bound);

  auto x = randn({3, 5, kIn}, 3);
  EXPECT_EQ(max_abs_diff(lora(x), (*base)(x)), 0.0f);
  // The adopted parameters are the base's slots: an update reaches the base.
  lora.update(ft::ParamMap{{"bias", mx::full({kOut}, 1.5f)}});
  EXPECT_EQ(max_abs_diff(*base->bias(), mx::full({kOut}, 1.5f)), 0.0f);
}

TEST(LoRALinear, ForwardEqualsCompositeAndRsLoRAScales) {
  auto base = make_base(1);
  auto x = randn({2, 7, kIn}, 3);
  for (bool rslora : {false, true}) {
    LoRALinear lora(base, kRank, 12.0f, mx::random::key(2), 0.0f, rslora);
    float s = rslora ? 12.0f / 2.0f : 12.0f / 4.0f;  // alpha/sqrt(r) or alpha/r, r = 4
    EXPECT_FLOAT_EQ(lora.scale(), s);
    randomize_adapter(lora, 10);
    auto expected =
        lora_reference(x, base->weight(), *base->bias(), lora.lora_A(), lora.lora_B(), s);
    EXPECT_LT(max_abs_diff(lora(x), expected), 1e-4f);
    EXPECT_GT(max_abs_diff(lora(x), (*base)(x)), 0.1f);  // the adapter contributes
  }
}

TEST(LoRALinear, QuantizedBase) {
  auto q = QuantizedLinear::from_linear(*make_base(1), 32, 4);
  LoRALinear lora(q, kRank, 8.0f, mx::random::key(2));
  EXPECT_TRUE(lora.quantized());
  EXPECT_EQ(lora.parameters().names(),
            (std::vector<std::string>{"weight", "scales", "biases", "bias", "lora_A", "lora_B"}));
  EXPECT_EQ(lora.trainable_parameters().names(), (std::vector<std::string>{"lora_A", "lora_B"}));
  randomize_adapter(lora, 4);
  auto x = randn({6, kIn}, 5);
  auto expected = lora_reference(x, q->dequantized_weight(), *q->bias(), lora.lora_A(),
                                 lora.lora_B(), lora.scale());
  EXPECT_LT(max_abs_diff(lora(x), expected), 2e-4f);
}

TEST(LoRALinear, GradientsMatchTheHandDerivedFormula) {
  auto base = make_base(1);
  LoRALinear lora(base, kRank, 8.0f, mx::random::key(2));
  randomize_adapter(lora, 6);
  auto x = randn({9, kIn}, 7);
  auto g = randn({9, kOut}, 8);
  auto [loss, grads] = ft_test::loss_and_grads(lora, x, g);
  EXPECT_EQ(grads.names(), (std::vector<std::string>{"lora_A", "lora_B"}));
  float s = lora.scale();
  // L = sum(G * (x W^T + b + s x A^T B^T)):
  //   dL/dB = s G^T (x A^T),  dL/dA = s (G B)^T x.
  auto d_b = mx::multiply(mx::array(s), mx::matmul(t(g), mx::matmul(x, t(lora.lora_A()))));
  auto d_a = mx::multiply(mx::array(s), mx::matmul(t(mx::matmul(g, lora.lora_B())), x));
  EXPECT_LT(max_abs_diff(grads.at("lora_B"), d_b), 1e-3f * max_abs(d_b));
  EXPECT_LT(max_abs_diff(grads.at("lora_A"), d_a), 1e-3f * max_abs(d_a));
  auto y = lora_reference(x, base->weight(), *base->bias(), lora.lora_A(), lora.lora_B(), s);
  EXPECT_NEAR(loss, mx::sum(mx::multiply(y, g)).item<float>(), 1e-3f * std::abs(loss) + 1e-3f);
  // A fresh adapter (B = 0) gets no gradient on A: A's gradient passes through B.
  LoRALinear fresh(base, kRank, 8.0f, mx::random::key(2));
  auto fresh_grads = ft_test::loss_and_grads(fresh, x, g).second;
  EXPECT_EQ(max_abs(fresh_grads.at("lora_A")), 0.0f);
  EXPECT_GT(max_abs(fresh_grads.at("lora_B")), 0.0f);
}

TEST(LoRALinear, LargerRanksAndXsGradientMatchTheHandDerivedFormula) {
  // The ranks people train with, 3-D inputs, and x's gradient (dx = G W + du A in one product
  // of the custom backward, Note [The adapter's backward]).
  auto base = make_base(1);
  for (int rank : {8, 16, 24}) {
    LoRALinear lora(base, rank, 8.0f, mx::random::key(2));
    lora.update(ft::ParamMap{{"lora_A", randn({rank, kIn}, 6, 0.3f)},
                             {"lora_B", randn({kOut, rank}, 7, 0.3f)}});
    auto x = randn({2, 9, kIn}, 8);
    auto g = randn({2, 9, kOut}, 9);
    const float s = lora.scale();
    const mx::array &a = lora.lora_A(), &b = lora.lora_B();
    auto y = lora_reference(x, base->weight(), *base->bias(), a, b, s);
    EXPECT_LT(max_abs_diff(lora(x), y), 1e-3f * max_abs(y)) << "rank " << rank;
    auto [loss, grads] = ft_test::loss_and_grads(lora, x, g);
    auto x2 = mx::reshape(x, {-1, kIn}), g2 = mx::reshape(g, {-1, kOut});
    auto d_b = mx::multiply(mx::array(s), mx::matmul(t(g2), mx::matmul(x2, t(a))));
    auto d_a = mx::multiply(mx::array(s), mx::matmul(t(mx::matmul(g2, b)), x2));
    EXPECT_LT(max_abs_diff(grads.at("lora_B"), d_b), 1e-3f * max_abs(d_b)) << "rank " << rank;
    EXPECT_LT(max_abs_diff(grads.at("lora_A"), d_a), 1e-3f * max_abs(d_a)) << "rank " << rank;
    // dx = G W + s (G B) A.
    auto dx = mx::vjp([&](const std::vector<mx::array>& in) { return std::vector{lora(in[0])}; },
                      {x}, {g})
                  .second[0];
    auto d_x = mx::add(mx::matmul(g, base->weight()),
                       mx::multiply(mx::array(s), mx::matmul(mx::matmul(g, b), a)));
    EXPECT_LT(max_abs_diff(dx, d_x), 1e-3f * max_abs(d_x)) << "rank " << rank;
  }
}

TEST(LoRALinear, SixteenBitActivationsRunTheFloat32AdapterInTheirDtype) {
  // Note [Adapters in the activations' dtype]: a float32 adapter over a bfloat16 base keeps
  // float32 parameters and gradients, but its products run in bfloat16: the output is what
  // the bfloat16 composite gives, and the gradients are those of the bfloat16 products.
  for (mx::Dtype half : {mx::bfloat16, mx::float16}) {
    auto f32 = make_base(1);
    auto linear = std::make_shared<Linear>(mx::astype(f32->weight(), half),
                                           mx::astype(*f32->bias(), half));
    mx::eval(linear->parameters().arrays());  // cut the graph back to the 16-bit values
    for (bool quantized : {false, true}) {
      // A quantized base takes the composite path, a plain one the fused path.
      std::shared_ptr<ft::nn::Layer> base = linear;
      mx::array w = linear->weight();
      if (quantized) {
        auto q = QuantizedLinear::from_linear(*linear, 32, 8);
        w = q->dequantized_weight();
        base = q;
      }
      LoRALinear lora(base, kRank, 8.0f, mx::random::key(2));
      randomize_adapter(lora, 6);
      ASSERT_EQ(lora.lora_A().dtype(), mx::float32);
      const float s = lora.scale();
      auto x = mx::astype(randn({2, 9, kIn}, 7), half);
      auto g = mx::astype(randn({2, 9, kOut}, 8), half);
      mx::eval(x, g);
      mx::eval(base->parameters().arrays());
      auto a16 = mx::astype(lora.lora_A(), half);
      auto sb16 = mx::astype(mx::multiply(mx::array(s), lora.lora_B()), half);
      auto y = lora(x);
      EXPECT_EQ(y.dtype(), half);
      // No float32 array in y's graph is larger than the adapter's own: no activation went
      // up to float32.
      EXPECT_LE(largest_float32_in_graph(y), kIn * kRank) << half << " " << quantized;
      auto expected = mx::add(mx::add(mx::matmul(x, t(w)), *linear->bias()),
                              mx::matmul(mx::matmul(x, t(a16)), t(sb16)));
      auto y32 = mx::astype(y, mx::float32), e32 = mx::astype(expected, mx::float32);
      EXPECT_LT(max_abs_diff(y32, e32), 2e-2f * max_abs(e32)) << half << " " << quantized;

      auto [loss, grads] = ft_test::loss_and_grads(lora, x, g);
      EXPECT_EQ(grads.at("lora_A").dtype(), mx::float32);
      EXPECT_EQ(grads.at("lora_B").dtype(), mx::float32);
      // dL/d(sB) = G^T (x A^T) and dL/dA = (G sB)^T x, from the 16-bit operands.
      auto x2 = mx::astype(mx::reshape(x, {-1, kIn}), mx::float32);
      auto g2 = mx::astype(mx::reshape(g, {-1, kOut}), mx::float32);
      auto a = mx::astype(a16, mx::float32), sb = mx::astype(sb16, mx::float32);
      auto d_b = mx::multiply(mx::array(s), mx::matmul(t(g2), mx::matmul(x2, t(a))));
      auto d_a = mx::matmul(t(mx::matmul(g2, sb)), x2);
      EXPECT_LT(max_abs_diff(grads.at("lora_B"), d_b), 2e-2f * max_abs(d_b)) << half;
      EXPECT_LT(max_abs_diff(grads.at("lora_A"), d_a), 2e-2f * max_abs(d_a)) << half;
    }
  }
}

TEST(LoRALinear, DropoutAppliesToTheAdapterInputOnly) {
  auto base = make_base(1);
  LoRALinear lora(base, kRank, 8.0f, mx::random::key(2), 0.5f);
  randomize_adapter(lora, 6);
  auto x = randn({4, kIn}, 7);
  // The same key as the wrapper's dropout will use gives the reference mask.
  ft::nn::Dropout reference(0.5f, lora.dropout().key());
  auto xd = reference(x);
  auto expected = mx::add(
      (*base)(x), mx::multiply(mx::array(lora.scale()),
                               mx::matmul(mx::matmul(xd, t(lora.lora_A())), t(lora.lora_B()))));
  EXPECT_LT(max_abs_diff(lora(x), expected), 1e-4f);
  // In eval mode dropout is off.
  lora.eval();
  EXPECT_FALSE(lora.dropout().training());
  auto plain =
      lora_reference(x, base->weight(), *base->bias(), lora.lora_A(), lora.lora_B(), lora.scale());
  EXPECT_LT(max_abs_diff(lora(x), plain), 1e-4f);
}

TEST(LoRALinear, FuseEqualsTheUnfusedForward) {
  auto x = randn({5, kIn}, 7);
  {
    LoRALinear lora(make_base(1), kRank, 8.0f, mx::random::key(2));
    randomize_adapter(lora, 6);
    auto fused = std::dynamic_pointer_cast<Linear>(lora.fuse());
    ASSERT_NE(fused, nullptr);
    EXPECT_EQ(fused->parameters().names(), (std::vector<std::string>{"weight", "bias"}));
    EXPECT_LT(max_abs_diff((*fused)(x), lora(x)), 1e-5f * max_abs(lora(x)) + 1e-5f);
    EXPECT_EQ(fused->num_trainable_parameters(), fused->num_parameters());
  }
  {
    auto q = QuantizedLinear::from_linear(*make_base(1), 64, 4);
    LoRALinear lora(q, kRank, 8.0f, mx::random::key(2));
    randomize_adapter(lora, 6);
    auto y = lora(x);
    // De-quantized: exact merge of the dequantized weight.
    auto dense = std::dynamic_pointer_cast<Linear>(lora.fuse(/*dequantize=*/true));
    ASSERT_NE(dense, nullptr);
    EXPECT_LT(max_abs_diff((*dense)(x), y), 1e-4f);
    // Re-quantized with the same group size and bits: within the new quantization
    // error, |y' - y| <= sum_k |x_k| * step per output (each weight moves less than
    // one step of its group's grid).
    auto requant = std::dynamic_pointer_cast<QuantizedLinear>(lora.fuse());
    ASSERT_NE(requant, nullptr);
    EXPECT_EQ(requant->group_size(), 64);
    EXPECT_EQ(requant->bits(), 4);
    EXPECT_EQ(requant->parameters().names(),
              (std::vector<std::string>{"weight", "scales", "biases", "bias"}));
    auto err = mx::abs(mx::subtract((*requant)(x), y));  // (5, out)
    float step = max_abs(requant->scales());
    auto bound = mx::multiply(mx::sum(mx::abs(x), 1, true), mx::array(step));  // (5, 1)
    EXPECT_TRUE(mx::all(mx::less_equal(err, mx::add(bound, mx::array(1e-4f)))).item<bool>());
    EXPECT_GT(max_abs_diff((*requant)(x), y), 0.0f);  // it really was re-quantized
  }
}

TEST(DoRALinear, FreshEqualsBaseAndMagnitudeIsRowNorms) {
  auto base = make_base(1);
  DoRALinear dora(base, kRank, 8.0f, mx::random::key(2));
  EXPECT_EQ(dora.parameters().names(),
            (std::vector<std::string>{"weight", "bias", "lora_A", "lora_B", "lora_magnitude"}));
  EXPECT_EQ(dora.trainable_parameters().names(),
            (std::vector<std::string>{"lora_A", "lora_B", "lora_magnitude"}));
  auto norms = mx::sqrt(mx::sum(mx::square(base->weight()), 1));
  EXPECT_LT(max_abs_diff(dora.lora_magnitude(), norms), 1e-6f);
  auto x = randn({3, kIn}, 3);
  EXPECT_LT(max_abs_diff(dora(x), (*base)(x)), 1e-5f);

  // A quantized base starts from the row norms of the dequantized weight.
  auto q = QuantizedLinear::from_linear(*base, 32, 4);
  DoRALinear qdora(q, kRank, 8.0f, mx::random::key(2));
  auto qnorms = mx::sqrt(mx::sum(mx::square(q->dequantized_weight()), 1));
  EXPECT_LT(max_abs_diff(qdora.lora_magnitude(), qnorms), 1e-6f);
  EXPECT_GT(max_abs_diff(qnorms, norms), 0.0f);
  EXPECT_LT(max_abs_diff(qdora(x), (*q)(x)), 1e-4f);
}

TEST(DoRALinear, ForwardEqualsTheDirectFormula) {
  auto base = make_base(1);
  auto x = randn({2, 3, kIn}, 3);
  for (bool quantized : {false, true}) {
    std::shared_ptr<ft::nn::Layer> layer = base;
    mx::array w = base->weight();
    if (quantized) {
      auto q = QuantizedLinear::from_linear(*base, 64, 8);
      layer = q;
      w = q->dequantized_weight();
    }
    DoRALinear dora(layer, kRank, 8.0f, mx::random::key(2), 0.0f, /*rslora=*/quantized);
    randomize_adapter(dora, 6);
    auto m = mx::multiply(dora.lora_magnitude(), mx::linspace(0.5, 1.5, kOut));
    dora.update(ft::ParamMap{{"lora_magnitude", m}});
    auto expected =
        dora_reference(x, w, *base->bias(), dora.lora_A(), dora.lora_B(), m, dora.scale());
    EXPECT_LT(max_abs_diff(dora(x), expected), 2e-4f) << "quantized " << quantized;

    // fuse() writes m / ||W + sBA|| (W + sBA): the same function.
    auto fused = dora.fuse(/*dequantize=*/true);
    EXPECT_LT(max_abs_diff((*fused)(x), dora(x)), 2e-4f);
  }
}

TEST(DoRALinear, GradientsTreatTheNormAsAConstant) {
  auto base = make_base(1);
  DoRALinear dora(base, kRank, 8.0f, mx::random::key(2));
  randomize_adapter(dora, 6);
  auto x = randn({6, kIn}, 7);
  auto g = randn({6, kOut}, 8);
  auto grads = ft_test::loss_and_grads(dora, x, g).second;

  // With n held at its current value the loss is linear in m and bilinear in (A, B),
  // so central differences of this function are exact up to rounding.
  float s = dora.scale();
  auto a0 = dora.lora_A(), b0 = dora.lora_B(), m0 = dora.lora_magnitude();
  auto n0 = mx::sqrt(mx::sum(
      mx::square(mx::add(base->weight(), mx::multiply(mx::array(s), mx::matmul(b0, a0)))), 1));
  auto loss = [&](const mx::array& a, const mx::array& b, const mx::array& m) {
    auto adapted = mx::add(base->weight(), mx::multiply(mx::array(s), mx::matmul(b, a)));
    auto y = mx::add(mx::multiply(mx::divide(m, n0), mx::matmul(x, t(adapted))), *base->bias());
    return mx::sum(mx::multiply(y, g)).item<float>();
  };
  const float h = 1e-2f;
  auto bump = [&](const mx::array& a, int flat, float by) {
    auto v = ft_test::to_vector(a);
    v[flat] += by;
    return mx::array(v.data(), a.shape(), mx::float32);
  };
  for (int flat : {0, 17, 200}) {
    float fd = (loss(bump(a0, flat, h), b0, m0) - loss(bump(a0, flat, -h), b0, m0)) / (2 * h);
    float got = ft_test::to_vector(grads.at("lora_A"))[flat];
    EXPECT_NEAR(got, fd, 2e-2f * std::abs(fd) + 2e-2f) << "A " << flat;
  }
  for (int flat : {0, 33, 127}) {
    float fd = (loss(a0, bump(b0, flat, h), m0) - loss(a0, bump(b0, flat, -h), m0)) / (2 * h);
    float got = ft_test::to_vector(grads.at("lora_B"))[flat];
    EXPECT_NEAR(got, fd, 2e-2f * std::abs(fd) + 2e-2f) << "B " << flat;
  }
  // dL/dm_o = sum_batch G[:, o] * (x adapted^T)[:, o] / n_o.
  auto adapted = mx::add(base->weight(), mx::multiply(mx::array(s), mx::matmul(b0, a0)));
  auto d_m = mx::divide(mx::sum(mx::multiply(g, mx::matmul(x, t(adapted))), 0), n0);
  EXPECT_LT(max_abs_diff(grads.at("lora_magnitude"), d_m), 1e-3f * max_abs(d_m));
}

TEST(DoRALinear, DropoutFollowsPeft) {
  auto base = make_base(1);
  DoRALinear dora(base, kRank, 8.0f, mx::random::key(2), 0.3f);
  randomize_adapter(dora, 6);
  auto m = mx::multiply(dora.lora_magnitude(), mx::array(1.2f));
  dora.update(ft::ParamMap{{"lora_magnitude", m}});
  auto x = randn({4, kIn}, 7);
  ft::nn::Dropout reference(0.3f, dora.dropout().key());
  auto xd = reference(x);
  float s = dora.scale();
  auto adapted =
      mx::add(base->weight(), mx::multiply(mx::array(s), mx::matmul(dora.lora_B(), dora.lora_A())));
  auto gscale = mx::divide(m, mx::sqrt(mx::sum(mx::square(adapted), 1)));
  // base(x) + (g - 1) xd W^T + g s (xd A^T) B^T
  auto expected = mx::add(
      mx::add((*base)(x), mx::multiply(mx::subtract(gscale, mx::array(1.0f)),
                                       mx::matmul(xd, t(base->weight())))),
      mx::multiply(gscale, mx::multiply(mx::array(s), mx::matmul(mx::matmul(xd, t(dora.lora_A())),
                                                                 t(dora.lora_B())))));
  EXPECT_LT(max_abs_diff(dora(x), expected), 2e-4f);
}

TEST(LoRALinear, Errors) {
  auto base = make_base(1);
  auto key = mx::random::key(0);
  EXPECT_FT_ERROR(LoRALinear(base, 0, 8.0f, key), "rank must be positive, got 0");
  EXPECT_FT_ERROR(LoRALinear(base, 4, 0.0f, key), "alpha must be positive");
  EXPECT_FT_ERROR(LoRALinear(base, 4, 8.0f, key, 1.0f), "dropout must be in [0, 1)");
  EXPECT_FT_ERROR(LoRALinear(nullptr, 4, 8.0f, key), "null");
  auto other = std::make_shared<ft::nn::Dropout>(0.1f);
  EXPECT_FT_ERROR(LoRALinear(other, 4, 8.0f, key),
                  "can only wrap a Linear or a QuantizedLinear, got a Dropout");
  LoRALinear lora(base, 4, 8.0f, key);
  EXPECT_FT_ERROR(lora(randn({2, 3}, 1)), "expected 64");
  DoRALinear dora(base, 4, 8.0f, key);
  EXPECT_FT_ERROR(dora(randn({2, 3}, 1)), "expected 64");
}
