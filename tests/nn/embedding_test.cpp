#include <gtest/gtest.h>

#include "tests/test_util.h"

#include <mlx/ops.h>
#include <mlx/random.h>

#include "ft/core/error.h"
#include "ft/nn/embedding.h"
#include "nn_test_util.h"

namespace mx = mlx::core;
using ft::nn::Embedding;
using ft::nn::QuantizedEmbedding;
using ft_test::max_abs_diff;
using ft_test::randn;
using ft_test::to_vector;

TEST(Embedding, LookupReturnsTheRows) {
  Embedding table(10, 6, mx::random::key(1));
  auto ids = mx::array({3, 0, 9, 3, 7, 1}, {2, 3}, mx::int32);
  auto out = table(ids);
  ASSERT_EQ(out.shape(), (mx::Shape{2, 3, 6}));
  auto w = to_vector(table.weight());
  auto got = to_vector(out);
  std::vector<int> id_list = {3, 0, 9, 3, 7, 1};
  for (size_t i = 0; i < id_list.size(); ++i)
    for (int d = 0; d < 6; ++d) EXPECT_EQ(got[i * 6 + d], w[id_list[i] * 6 + d]);
  // Drawn N(0, 1): a weak but failing-capable check on the spread.
  Embedding big(200, 50, mx::random::key(2));
  float std = mx::sqrt(mx::var(big.weight())).item<float>();
  EXPECT_NEAR(std, 1.0f, 0.05f);
}

TEST(Embedding, AsLinearIsTheTiedHead) {
  Embedding table(10, 6, mx::random::key(1));
  auto x = randn({2, 6}, 3);
  auto logits = table.as_linear(x);
  ASSERT_EQ(logits.shape(), (mx::Shape{2, 10}));
  // Row v of the output is <x, W[v]>.
  auto w = to_vector(table.weight());
  auto xs = to_vector(x);
  auto got = to_vector(logits);
  for (int b = 0; b < 2; ++b)
    for (int v = 0; v < 10; ++v) {
      double dot = 0;
      for (int d = 0; d < 6; ++d) dot += xs[b * 6 + d] * w[v * 6 + d];
      EXPECT_NEAR(got[b * 10 + v], dot, 1e-5);
    }
}

TEST(Embedding, Errors) {
  Embedding table(10, 6, mx::random::key(1));
  EXPECT_FT_ERROR(table(mx::array({1.0f, 2.0f})), "ids must be an integer array");
  EXPECT_FT_ERROR(table.as_linear(randn({2, 5}, 1)), "expected 6");
  EXPECT_FT_ERROR(Embedding(0, 6, mx::random::key(1)), "sizes must be positive");
}

TEST(QuantizedEmbedding, LookupAndHeadMatchTheDequantizedTable) {
  Embedding table(40, 128, mx::random::key(4));
  for (int bits : {4, 8}) {
    auto q = QuantizedEmbedding::from_embedding(table, 64, bits);
    EXPECT_EQ(q->dim(), 128);
    EXPECT_EQ(q->num_embeddings(), 40);
    EXPECT_TRUE(q->trainable_parameters().empty());
    auto w = q->dequantized_weight();
    auto ids = mx::array({5, 39, 0, 5}, {2, 2}, mx::uint32);
    auto rows = (*q)(ids);
    ASSERT_EQ(rows.shape(), (mx::Shape{2, 2, 128}));
    EXPECT_EQ(max_abs_diff(rows, mx::take(w, ids, 0)), 0.0f);
    // Close to the float table: within one quantization step.
    float step = ft_test::max_abs(q->scales());
    EXPECT_LT(max_abs_diff(rows, table(ids)), step + 1e-6f);

    auto x = randn({3, 128}, 5);
    EXPECT_LT(max_abs_diff(q->as_linear(x), mx::matmul(x, mx::transpose(w))),
              ft::testing::tf32_tolerance(2e-4f));
  }
}

TEST(QuantizedEmbedding, PlaceholdersAndErrors) {
  Embedding table(8, 64, mx::random::key(4));
  auto source = QuantizedEmbedding::from_embedding(table, 32, 4);
  QuantizedEmbedding target(8, 64, 32, 4);
  target.load(source->parameters());
  auto ids = mx::array({1, 2, 7}, mx::int32);
  EXPECT_EQ(max_abs_diff(target(ids), (*source)(ids)), 0.0f);
  EXPECT_FT_ERROR(QuantizedEmbedding(8, 48, 32, 4), "does not divide");
  EXPECT_FT_ERROR(QuantizedEmbedding::from_embedding(table, 64, 1), "bits must be");
  EXPECT_FT_ERROR(target(mx::array({0.5f})), "integer");
}
