#include <gtest/gtest.h>

#include <mlx/ops.h>
#include <mlx/random.h>
#include <mlx/transforms.h>

#include "ft/core/error.h"
#include "ft/models/registry.h"
#include "ft/train/losses.h"
#include "ft/train/optimizer.h"
#include "ft/train/step.h"
#include "tests/test_util.h"
#include "tests/train/tiny_model.h"

namespace mx = mlx::core;

namespace {

ft::models::Config tiny_config() {
  return ft::testing::tiny_llama_config();
}

// Batch: {inputs (B, L), targets (B, L) with -100 where not trained}.
ft::LossOutput llama_loss(ft::nn::Module& m, const ft::Batch& batch, const mx::array&) {
  auto& model = static_cast<ft::models::CausalLM&>(m);
  mx::array logits = model(batch[0]);
  mx::array loss =
      ft::train::cross_entropy(logits, batch[1], {.reduction = ft::train::Reduction::sum});
  return {loss, ft::train::num_valid_tokens(batch[1])};
}

ft::Batch make_batch(int batch, int length, int masked_tail, uint64_t seed) {
  auto key = mx::random::key(seed);
  auto [k1, k2] = mx::random::split(key);
  mx::array inputs = mx::random::randint(0, 32, {batch, length}, mx::int32, k1);
  mx::array targets = mx::random::randint(0, 32, {batch, length}, mx::int32, k2);
  if (masked_tail > 0) {
    mx::array position = mx::reshape(mx::arange(length, mx::int32), {1, length});
    targets = mx::where(position >= length - masked_tail, mx::array(-100, mx::int32), targets);
  }
  return {inputs, targets};
}

std::unique_ptr<ft::Optimizer> optimizer(const std::string& name, float lr) {
  ft::OptimizerConfig c;
  c.name = name;
  c.learning_rate = lr;
  return ft::make_optimizer(c);
}

std::unique_ptr<ft::Optimizer> sgd(float lr) {
  return optimizer("sgd", lr);
}

float max_abs_diff(const ft::ParamMap& a, const ft::ParamMap& b) {
  float worst = 0;
  for (const auto& [name, value] : a)
    worst = std::max(worst, mx::max(mx::abs(value - b.at(name))).item<float>());
  return worst;
}

}  // namespace

// Two micro-batches with different numbers of trained tokens give the same update as
// one batch holding both (Note [Token-normalised accumulation]).
TEST(TrainStep, AccumulationEqualsOneBigBatch) {
  ft::Batch a = make_batch(2, 8, 0, 1), b = make_batch(2, 8, 5, 2);
  ft::Batch both = {mx::concatenate({a[0], b[0]}, 0), mx::concatenate({a[1], b[1]}, 0)};
  auto key = mx::random::key(0);

  ft::Rng rng1(7), rng2(7);
  auto m1_model = ft::models::build_model(tiny_config(), rng1);
  auto& m1 = *m1_model;
  auto m2_model = ft::models::build_model(tiny_config(), rng2);
  auto& m2 = *m2_model;
  auto o1 = sgd(0.5f), o2 = sgd(0.5f);
  ft::TrainStep s1(m1, llama_loss, *o1), s2(m2, llama_loss, *o2);
  auto r1 = s1.run({a, b}, {key, key});
  auto r2 = s2.run({both}, {key});
  EXPECT_EQ(r1.tokens, 2 * 8 + 2 * 3);
  EXPECT_EQ(r1.tokens, r2.tokens);
  EXPECT_NEAR(r1.loss, r2.loss, 1e-5);
  EXPECT_NEAR(r1.grad_norm, r2.grad_norm, 1e-4);
  EXPECT_LT(max_abs_diff(m1.parameters(), m2.parameters()), 1e-5);
  // The update did something: parameters moved away from the initial ones.
  ft::Rng rng3(7);
  auto fresh_model = ft::models::build_model(tiny_config(), rng3);
  auto& fresh = *fresh_model;
  EXPECT_GT(max_abs_diff(m1.parameters(), fresh.parameters()), 1e-3);
}

// The step's gradient of the loss sum agrees with central finite differences.
TEST(TrainStep, GradientMatchesFiniteDifferences) {
  ft::Rng rng(3);
  auto built = ft::models::build_model(tiny_config(), rng);
  auto& model = *built;
  auto opt = sgd(0.1f);
  ft::StepConfig config;
  config.compile = false;
  ft::TrainStep step(model, llama_loss, *opt, config);
  ft::Batch batch = make_batch(1, 6, 2, 11);
  auto key = mx::random::key(0);
  auto [loss, grads] = step.loss_and_grads(batch, key);
  const std::string name = "model.layers.1.mlp.down_proj.weight";
  mx::array g = grads.at(name);
  mx::array w = model.parameters().at(name);
  const float eps = 1e-2f;
  for (int flat : {0, 7, 100, 511}) {
    mx::array delta =
        mx::reshape(mx::astype(mx::arange(static_cast<int>(w.size())) == flat, mx::float32),
                    w.shape()) *
        eps;
    model.update({{name, w + delta}});
    float plus = llama_loss(model, batch, key).loss_sum.item<float>();
    model.update({{name, w - delta}});
    float minus = llama_loss(model, batch, key).loss_sum.item<float>();
    model.update({{name, w}});
    float numeric = (plus - minus) / (2 * eps);
    float analytic = mx::take(mx::reshape(g, {-1}), flat).item<float>();
    EXPECT_NEAR(analytic, numeric, 2e-3 + 2e-2 * std::abs(numeric)) << "element " << flat;
  }
}

TEST(TrainStep, CompiledEqualsUncompiledAndCheckpointed) {
  ft::Batch batch = make_batch(2, 8, 1, 5);
  auto key = mx::random::key(0);
  std::vector<ft::ParamMap> results;
  for (int variant = 0; variant < 3; ++variant) {
    ft::Rng rng(9);
    auto built = ft::models::build_model(tiny_config(), rng);
    auto& model = *built;
    model.set_gradient_checkpointing(variant == 2);
    auto opt = sgd(0.5f);
    ft::StepConfig config;
    config.compile = variant != 1;
    ft::TrainStep step(model, llama_loss, *opt, config);
    for (int i = 0; i < 3; ++i) step.run({batch}, {key});
    results.push_back(model.parameters());
  }
  EXPECT_LT(max_abs_diff(results[0], results[1]), 1e-5);
  EXPECT_LT(max_abs_diff(results[0], results[2]), 1e-5);
}

TEST(TrainStep, LossFallsWithAdamW) {
  ft::Rng rng(1);
  auto built = ft::models::build_model(tiny_config(), rng);
  auto& model = *built;
  auto opt = optimizer("adamw", 1e-2f);
  ft::StepConfig config;
  config.max_grad_norm = 1.0f;
  ft::TrainStep step(model, llama_loss, *opt, config);
  ft::Batch batch = make_batch(4, 8, 0, 21);  // memorise one batch
  auto key = mx::random::key(0);
  float first = step.run({batch}, {key}).loss;
  float last = first;
  for (int i = 0; i < 40; ++i) last = step.run({batch}, {key}).loss;
  EXPECT_NEAR(first, std::log(32.0f), 0.5f);
  EXPECT_LT(last, 0.5f * first);
}

// With SGD at lr 1 the update is minus the gradient of the MEAN loss over the trained
// tokens: the gradient of the loss sum divided by the token count, and the reported norm
// is that gradient's (Note [One pass over the gradients]).
TEST(TrainStep, UpdateIsTheGradientOfTheMeanLoss) {
  ft::Batch batch = make_batch(2, 8, 3, 6);
  auto key = mx::random::key(0);
  ft::Rng rng1(5), rng2(5);
  auto m1 = ft::models::build_model(tiny_config(), rng1);
  auto m2 = ft::models::build_model(tiny_config(), rng2);
  ft::ParamMap before = m1->parameters();
  auto o1 = sgd(1.0f), o2 = sgd(1.0f);
  ft::TrainStep s1(*m1, llama_loss, *o1), s2(*m2, llama_loss, *o2);
  auto [loss, sum_grads] = s2.loss_and_grads(batch, key);
  const float tokens = 2 * (8 - 3);
  auto r = s1.run({batch}, {key});
  EXPECT_EQ(r.tokens, tokens);
  EXPECT_NEAR(r.loss, loss.loss_sum.item<float>() / tokens, 1e-5);
  float worst = 0, scale = 0, squared = 0;
  for (const auto& [name, g] : sum_grads) {
    mx::array expected = mx::divide(g, mx::array(tokens));
    mx::array moved = mx::subtract(before.at(name), m1->parameters().at(name));
    worst = std::max(worst, mx::max(mx::abs(moved - expected)).item<float>());
    scale = std::max(scale, mx::max(mx::abs(expected)).item<float>());
    squared += mx::sum(mx::square(expected)).item<float>();
  }
  EXPECT_GT(scale, 1e-3f);
  EXPECT_LT(worst, 1e-5f * std::max(1.0f, scale));
  EXPECT_NEAR(r.grad_norm, std::sqrt(squared), 1e-4f * std::sqrt(squared));
}

TEST(TrainStep, ClippingBoundsTheUpdate) {
  ft::Batch batch = make_batch(2, 8, 0, 5);
  auto key = mx::random::key(0);
  ft::Rng rng1(4), rng2(4);
  auto m1_model = ft::models::build_model(tiny_config(), rng1);
  auto& m1 = *m1_model;
  auto m2_model = ft::models::build_model(tiny_config(), rng2);
  auto& m2 = *m2_model;
  ft::ParamMap before = m1.parameters();
  auto o1 = sgd(1.0f), o2 = sgd(1.0f);
  ft::StepConfig clipped;
  clipped.max_grad_norm = 1e-3f;
  ft::TrainStep s1(m1, llama_loss, *o1, clipped), s2(m2, llama_loss, *o2);
  auto r1 = s1.run({batch}, {key});
  auto r2 = s2.run({batch}, {key});
  EXPECT_NEAR(r1.grad_norm, r2.grad_norm, 1e-5);  // the norm before clipping
  EXPECT_GT(r1.grad_norm, 1e-2);
  // With SGD at lr 1 the update is the (clipped) gradient: its norm is max_grad_norm.
  float squared = 0;
  for (const auto& [name, value] : m1.parameters())
    squared += mx::sum(mx::square(value - before.at(name))).item<float>();
  EXPECT_NEAR(std::sqrt(squared), 1e-3f, 1e-5f);
}

TEST(TrainStep, BadInputIsAnError) {
  ft::Rng rng(1);
  auto built = ft::models::build_model(tiny_config(), rng);
  auto& model = *built;
  auto opt = sgd(0.1f);
  ft::TrainStep step(model, llama_loss, *opt);
  EXPECT_THROW(step.run({}, {}), ft::Error);
  EXPECT_THROW(step.run({make_batch(1, 4, 0, 1)}, {}), ft::Error);
  model.freeze();
  EXPECT_THROW(ft::TrainStep(model, llama_loss, *opt), ft::Error);
}

// Note [Row shards on the CPU]: splitting each batch's rows over workers gives the update
// of the unsplit batch up to rounding, uneven splits included, and the same bits on every run.
TEST(TrainStep, RowShardsEqualTheWholeBatchAndRepeatExactly) {
  ft::testing::OnCpu cpu;
  ft::Batch batch = make_batch(5, 8, 3, 31);
  struct Run {
    std::vector<float> losses;
    ft::ParamMap params;
  };
  auto train = [&](int shards) {
    ft::Rng rng(12);
    auto built = ft::models::build_model(tiny_config(), rng);
    auto& model = *built;
    auto opt = optimizer("adamw", 1e-2f);
    ft::StepConfig config;
    config.row_shards = shards;
    ft::TrainStep step(model, llama_loss, *opt, config);
    Run run;
    for (int i = 0; i < 3; ++i) run.losses.push_back(step.run({batch}, {mx::random::key(i)}).loss);
    run.params = model.parameters();
    return run;
  };
  Run whole = train(1), two = train(2), three = train(3), again = train(3);
  for (const Run* r : {&two, &three}) {
    for (int i = 0; i < 3; ++i) EXPECT_NEAR(r->losses[i], whole.losses[i], 1e-5) << "step " << i;
    EXPECT_LT(max_abs_diff(r->params, whole.params), 1e-5);
  }
  EXPECT_GT(whole.losses[0] - whole.losses[2], 0.05f);  // the steps did train
  EXPECT_EQ(three.losses, again.losses);
  EXPECT_EQ(max_abs_diff(three.params, again.params), 0.0f);
}

// A batch whose arrays do not all share their first dimension runs unsplit.
TEST(TrainStep, BatchesWithoutCommonRowsRunUnsplit) {
  ft::testing::OnCpu cpu;
  ft::Batch batch = make_batch(4, 8, 0, 3);
  batch.push_back(mx::array(2.0f));  // a scalar the loss scales by
  ft::LossFn scaled = [](ft::nn::Module& m, const ft::Batch& b, const mx::array& key) {
    ft::LossOutput out = llama_loss(m, b, key);
    return ft::LossOutput{out.loss_sum * b[2], out.tokens};
  };
  auto final_loss = [&](int shards) {
    ft::Rng rng(2);
    auto built = ft::models::build_model(tiny_config(), rng);
    auto& model = *built;
    auto opt = sgd(0.1f);
    ft::StepConfig config;
    config.row_shards = shards;
    ft::TrainStep step(model, scaled, *opt, config);
    step.run({batch}, {mx::random::key(0)});
    return step.run({batch}, {mx::random::key(1)}).loss;
  };
  EXPECT_EQ(final_loss(2), final_loss(1));
}
