// Row shards on the CPU (ft/train/row_shards.h): how batches split, and evaluation over
// shards against the unsplit batch.
#include <gtest/gtest.h>

#include <mlx/ops.h>
#include <mlx/random.h>
#include <mlx/transforms.h>

#include "ft/kernels/cpu/parallel.h"
#include "ft/models/registry.h"
#include "ft/train/losses.h"
#include "ft/train/row_shards.h"
#include "ft/train/trainer.h"
#include "tests/test_util.h"
#include "tests/train/tiny_model.h"

namespace mx = mlx::core;

namespace {

// The CPU thread count while it lives; the count from the environment after.
class Threads {
 public:
  explicit Threads(int n) : saved_(ft::kernels::cpu::num_threads()) {
    ft::kernels::cpu::set_num_threads(n);
  }
  ~Threads() { ft::kernels::cpu::set_num_threads(saved_); }

 private:
  int saved_;
};

}  // namespace

TEST(RowShards, SplitsRowsEvenlyAndOnlyCommonRowMajorBatches) {
  ft::testing::OnCpu cpu;
  Threads threads(3);
  mx::array a = mx::reshape(mx::arange(10, mx::int32), {5, 2});
  mx::array b = mx::arange(5, mx::int32);
  EXPECT_EQ(ft::batch_row_shards({a, b}), 3);
  EXPECT_EQ(ft::batch_row_shards({a, b}, 2), 2);
  EXPECT_EQ(ft::batch_row_shards({a, b}, 9), 5);  // at most one per row
  EXPECT_EQ(ft::batch_row_shards({a, mx::arange(4)}), 1);
  EXPECT_EQ(ft::batch_row_shards({a, mx::array(1)}), 1);
  EXPECT_EQ(ft::batch_row_shards({}), 1);
  std::vector<int> rows;
  std::vector<int> first;
  for (int i = 0; i < 3; ++i) {
    auto part = ft::shard_rows({a, b}, i, 3);
    rows.push_back(part[0].shape(0));
    EXPECT_EQ(part[1].shape(0), part[0].shape(0));
    first.push_back(part[1].shape(0) > 0 ? mx::take(part[1], 0).item<int>() : -1);
  }
  EXPECT_EQ(rows, (std::vector<int>{1, 2, 2}));
  EXPECT_EQ(first, (std::vector<int>{0, 1, 3}));
}

// Evaluation split over shards (uneven ones included) counts the same tokens and hits and
// sums the same loss up to rounding.
TEST(RowShards, EvaluationOverShardsEqualsTheWholeBatch) {
  ft::testing::OnCpu cpu;
  ft::Rng rng(5);
  auto built = ft::models::build_model(ft::testing::tiny_llama_config(), rng);
  auto& model = *built;
  model.eval();
  auto [k1, k2] = mx::random::split(mx::random::key(8));
  mx::array inputs = mx::random::randint(0, 32, {5, 7}, mx::int32, k1);
  mx::array targets = mx::random::randint(0, 32, {5, 7}, mx::int32, k2);
  targets = mx::where(mx::reshape(mx::arange(7), {1, 7}) < 2, mx::array(-100), targets);
  ft::train::EvalFn eval_fn = [](ft::nn::Module& m, const ft::Batch& batch) {
    auto& lm = static_cast<ft::models::CausalLM&>(m);
    mx::array logits = lm(batch[0]);
    mx::array loss =
        ft::train::cross_entropy(logits, batch[1], {.reduction = ft::train::Reduction::sum});
    mx::array valid = mx::not_equal(batch[1], mx::array(-100));
    mx::array right = mx::logical_and(valid, mx::equal(mx::argmax(logits, -1), batch[1]));
    return ft::train::EvalOutput{loss, mx::sum(valid), mx::sum(right)};
  };
  auto run = [&](int n) {
    Threads threads(n);
    ft::RowShards shards;
    return ft::train::evaluate_batch(model, eval_fn, {inputs, targets}, shards);
  };
  ft::train::EvalOutput whole = run(1), split = run(3);
  EXPECT_EQ(split.tokens.item<int>(), 25);
  EXPECT_EQ(split.tokens.item<int>(), whole.tokens.item<int>());
  EXPECT_EQ(split.correct.item<int>(), whole.correct.item<int>());
  EXPECT_NEAR(split.loss_sum.item<float>(), whole.loss_sum.item<float>(),
              1e-5f * whole.loss_sum.item<float>());
  EXPECT_GT(whole.loss_sum.item<float>(), 25.0f);  // about log(32) per token
}
