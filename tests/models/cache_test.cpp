// The cached forward against the full forward, and masked (packed) rows against
// samples run alone.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include <mlx/ops.h>
#include <mlx/random.h>
#include <mlx/transforms.h>

#include "ft/core/param_map.h"
#include "ft/models/cache.h"
#include "ft/models/attention_mask.h"
#include "ft/models/registry.h"
#include "tests/test_util.h"

namespace mx = mlx::core;
namespace fs = std::filesystem;

namespace {

const fs::path kModels = fs::path(FT_TEST_DATA) / "models";

float max_abs_diff(const mx::array& a, const mx::array& b) {
  EXPECT_EQ(a.shape(), b.shape());
  return mx::max(mx::abs(a - b)).item<float>();
}

mx::array random_ids(int batch, int length, int vocab, uint64_t seed) {
  return mx::random::randint(0, vocab, {batch, length}, mx::int32, mx::random::key(seed));
}

mx::array columns(const mx::array& x, int begin, int end) {  // x[:, begin:end, ...]
  mx::Shape start(x.ndim(), 0), stop = x.shape();
  start[1] = begin;
  stop[1] = end;
  return mx::slice(x, start, stop);
}

class CachedForward : public ::testing::TestWithParam<std::string> {};

// A prompt chunk, then token by token, then a chunk of three: each piece's logits equal
// the same positions of one full forward.
TEST_P(CachedForward, EqualsTheFullForward) {
  auto model = ft::models::load_model(kModels / GetParam(), mx::float32);
  model->eval();
  const int length = 12;
  mx::array ids = random_ids(2, length, model->config().vocab_size, 7);
  mx::array full = (*model)(ids);

  // step 4 forces the storage to grow several times, once in the middle of a chunk.
  ft::models::Cache cache(model->config().num_hidden_layers, 4);
  std::vector<std::pair<int, int>> pieces = {{0, 5}, {5, 6}, {6, 7}, {7, 8}, {8, 9}, {9, 12}};
  for (auto [begin, end] : pieces) {
    EXPECT_EQ(cache.offset(), begin);
    mx::array logits = model->forward(columns(ids, begin, end), cache);
    EXPECT_LT(max_abs_diff(logits, columns(full, begin, end)), 1e-5f)
        << GetParam() << " positions " << begin << ".." << end;
  }
  EXPECT_EQ(cache.offset(), length);

  // A trimmed cache recomputes the tail the same way.
  cache.trim(8);
  mx::array tail = model->forward(columns(ids, 8, length), cache);
  EXPECT_LT(max_abs_diff(tail, columns(full, 8, length)), 1e-5f);
}

// Mistral's window (sliding_window in its config) is shorter than the sequence, so the
// cached path must apply it too.
INSTANTIATE_TEST_SUITE_P(Golden, CachedForward,
                         ::testing::Values("llama", "qwen3", "mistral", "llama_linear",
                                           "llama3_tied", "qwen2"));

// Dynamic NTK scaling (max_position_embeddings 8 here) picks its base from the
// positions seen: a cached run equals the full forward up to 8 positions, and a prompt
// of 12 in one chunk equals it too (the same base for all of them).
TEST(CachedForwardDynamicRope, EqualsTheFullForwardWhereHuggingFaceAgrees) {
  auto model = ft::models::load_model(kModels / "llama_dynamic", mx::float32);
  model->eval();
  ASSERT_EQ(model->config().max_position_embeddings, 8);
  mx::array ids = random_ids(1, 12, model->config().vocab_size, 9);
  mx::array first8 = columns(ids, 0, 8);
  mx::array full8 = (*model)(first8);
  ft::models::Cache cache(model->config().num_hidden_layers);
  EXPECT_LT(max_abs_diff(model->forward(columns(ids, 0, 6), cache), columns(full8, 0, 6)), 1e-5f);
  for (int p = 6; p < 8; ++p)
    EXPECT_LT(max_abs_diff(model->forward(columns(ids, p, p + 1), cache), columns(full8, p, p + 1)),
              1e-5f);
  ft::models::Cache fresh(model->config().num_hidden_layers);
  EXPECT_LT(max_abs_diff(model->forward(ids, fresh), (*model)(ids)), 1e-5f);
}

TEST(PackedMask, TwoSamplesInOneRowGiveTheLogitsOfEachAlone) {
  for (std::string name : {"llama", "qwen3"}) {
    auto model = ft::models::load_model(kModels / name, mx::float32);
    model->eval();
    int vocab = model->config().vocab_size;
    mx::array a = random_ids(1, 5, vocab, 1), b = random_ids(1, 4, vocab, 2);
    mx::array row = mx::concatenate({a, b}, 1);
    int32_t segments[] = {1, 1, 1, 1, 1, 2, 2, 2, 2};
    mx::array mask = ft::models::segment_causal_mask(mx::array(segments, {1, 9}, mx::int32));
    mx::array packed = (*model)(row, mask);
    EXPECT_LT(max_abs_diff(columns(packed, 0, 5), (*model)(a)), 1e-5f) << name;
    EXPECT_LT(max_abs_diff(columns(packed, 5, 9), (*model)(b)), 1e-5f) << name;
    // Without the mask the second sample sees the first: the test can tell.
    EXPECT_GT(max_abs_diff(columns((*model)(row), 5, 9), (*model)(b)), 1e-3f) << name;
    // The same mask as additive floats.
    mx::array additive = mx::where(mask, mx::array(0.0f), mx::array(-1e9f));
    EXPECT_LT(max_abs_diff((*model)(row, additive), packed), 1e-5f) << name;
  }
}

TEST(Cache, RejectsMismatchedUpdatesAndBadTrims) {
  ft::models::LayerCache cache(2);
  auto [k, v] = cache.update(mx::ones({1, 2, 3, 4}), mx::zeros({1, 2, 3, 4}));
  EXPECT_EQ(k.shape(), (mx::Shape{1, 2, 3, 4}));
  EXPECT_EQ(cache.offset(), 3);
  ft::testing::expect_error(
      [&] {
        cache.update(mx::ones({1, 3, 1, 4}), mx::ones({1, 3, 1, 4}));
      },
      "do not match");
  ft::testing::expect_error([&] { cache.trim(4); }, "cannot trim");
  auto [k2, v2] = cache.update(mx::full({1, 2, 1, 4}, 2.0f), mx::ones({1, 2, 1, 4}));
  EXPECT_EQ(k2.shape(), (mx::Shape{1, 2, 4, 4}));
  EXPECT_EQ(mx::sum(k2).item<float>(), 3 * 8 + 2 * 8);
  EXPECT_EQ(mx::sum(v2).item<float>(), 8);
}

}  // namespace

// Gradient checkpointing recomputes each layer with the same mask: the gradients of a
// packed row equal those without checkpointing.
TEST(PackedMask, GradientCheckpointingKeepsTheMask) {
  auto model = ft::models::load_model(kModels / "llama", mx::float32);
  mx::array row = random_ids(1, 9, model->config().vocab_size, 4);
  int32_t segments[] = {1, 1, 1, 1, 1, 2, 2, 2, 2};
  mx::array mask = ft::models::segment_causal_mask(mx::array(segments, {1, 9}, mx::int32));
  ft::ParamMap params = model->parameters();
  auto gradients = [&](bool checkpointing) {
    model->train();
    model->set_gradient_checkpointing(checkpointing);
    auto loss = [&](const std::vector<mx::array>& inputs) {
      model->update(ft::ParamMap::zip(params.names(), inputs));
      return std::vector<mx::array>{mx::sum(mx::square((*model)(row, mask)))};
    };
    auto grads = mx::vjp(loss, params.arrays(), {mx::array(1.0f)}).second;
    model->update(params);
    return grads;
  };
  auto plain = gradients(false), checkpointed = gradients(true);
  ASSERT_EQ(plain.size(), checkpointed.size());
  float worst = 0;
  for (size_t i = 0; i < plain.size(); ++i)
    worst = std::max(worst, max_abs_diff(plain[i], checkpointed[i]) /
                                std::max(mx::max(mx::abs(plain[i])).item<float>(), 1e-6f));
  EXPECT_LT(worst, 1e-4f);
}
