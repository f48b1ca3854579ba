#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include <mlx/ops.h>
#include <mlx/random.h>

#include "ft/core/error.h"
#include "ft/train/clip.h"

namespace mx = mlx::core;

namespace {

ft::ParamMap some_grads() {
  return {{"a", mx::random::normal({7, 5}, mx::float32, 0, 1, mx::random::key(1))},
          {"b", mx::random::normal({9}, mx::float32, 0, 2, mx::random::key(2))}};
}

// The norm summed on the host in double.
double host_norm(const ft::ParamMap& grads) {
  double sum = 0.0;
  for (const auto& [name, g] : grads) {
    mx::array f = mx::astype(g, mx::float32);
    f.eval();
    const float* data = f.data<float>();
    for (size_t i = 0; i < f.size(); ++i) sum += static_cast<double>(data[i]) * data[i];
  }
  return std::sqrt(sum);
}

}  // namespace

TEST(ClipGradNorm, NormMatchesADirectSum) {
  ft::ParamMap grads = some_grads();
  const double want = host_norm(grads);
  ft::ClippedGrads out = ft::clip_grad_norm(grads, 1e6f);
  EXPECT_NEAR(out.norm.item<float>(), want, want * 1e-6);
  EXPECT_NEAR(ft::global_norm(grads).item<float>(), want, want * 1e-6);
}

TEST(ClipGradNorm, ScalesDownToTheMaxNorm) {
  ft::ParamMap grads = some_grads();
  const double before = host_norm(grads);
  ASSERT_GT(before, 2.0);
  ft::ClippedGrads out = ft::clip_grad_norm(grads, 2.0f);
  EXPECT_FALSE(out.grads.at("a").is_available());  // lazy until evaluated
  EXPECT_NEAR(host_norm(out.grads), 2.0, 1e-5);
  // Every gradient is scaled by the same factor, as PyTorch computes it.
  const float scale = static_cast<float>(2.0 / (before + 1e-6));
  for (const auto& [name, g] : grads)
    EXPECT_TRUE(mx::allclose(out.grads.at(name), g * scale, 1e-6, 1e-7).item<bool>()) << name;
  EXPECT_NEAR(out.norm.item<float>(), before, before * 1e-6);
}

TEST(ClipGradNorm, LeavesSmallGradientsAlone) {
  ft::ParamMap grads = some_grads();
  ft::ClippedGrads out = ft::clip_grad_norm(grads, static_cast<float>(host_norm(grads) * 1.01));
  for (const auto& [name, g] : grads)
    EXPECT_TRUE(mx::array_equal(out.grads.at(name), g).item<bool>()) << name;
}

TEST(ClipGradNorm, KeepsBf16AndRejectsBadMaxNorm) {
  ft::ParamMap grads =
      ft::tree_map(some_grads(), [](const mx::array& g) { return mx::astype(g, mx::bfloat16); });
  ft::ClippedGrads out = ft::clip_grad_norm(grads, 1.0f);
  EXPECT_EQ(out.grads.at("b").dtype(), mx::bfloat16);
  EXPECT_EQ(out.norm.dtype(), mx::float32);
  EXPECT_NEAR(host_norm(out.grads), 1.0, 1e-2);  // bf16 rounding of each element
  EXPECT_NEAR(out.norm.item<float>(), host_norm(grads), host_norm(grads) * 1e-6);
  EXPECT_THROW(ft::clip_grad_norm(grads, 0.0f), ft::Error);
  EXPECT_THROW(ft::clip_grad_norm(grads, -1.0f), ft::Error);
  EXPECT_THROW(ft::clip_grad_norm(grads, NAN), ft::Error);
}
