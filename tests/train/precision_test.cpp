// Mixed precision in TrainStep: f32 masters of bf16/f16 parameters, and dynamic loss
// scaling. The reference is the same step run in float32.
#include <gtest/gtest.h>

#include <cmath>

#include <mlx/ops.h>
#include <mlx/random.h>
#include <mlx/transforms.h>

#include "ft/core/dtype.h"
#include "ft/core/error.h"
#include "ft/models/registry.h"
#include "ft/train/losses.h"
#include "ft/train/optimizer.h"
#include "ft/train/precision.h"
#include "ft/train/step.h"
#include "tests/test_util.h"
#include "tests/train/tiny_model.h"

namespace mx = mlx::core;

namespace {

ft::models::Config tiny_config() {
  return ft::testing::tiny_llama_config();
}

// Batch: {inputs (B, L), targets (B, L), poison ()}. A nonzero poison adds
// poison * sum(logits) to the loss: its gradient overflows float16 for a large poison
// while the loss value stays finite, which is how a real overflow looks.
ft::LossOutput llama_loss(ft::nn::Module& m, const ft::Batch& batch, const mx::array&) {
  auto& model = static_cast<ft::models::CausalLM&>(m);
  mx::array logits = model(batch[0]);
  mx::array loss =
      ft::train::cross_entropy(logits, batch[1], {.reduction = ft::train::Reduction::sum});
  if (batch.size() > 2) loss = loss + batch[2] * mx::sum(mx::astype(logits, mx::float32));
  return {loss, ft::train::num_valid_tokens(batch[1])};
}

ft::Batch make_batch(uint64_t seed, float poison = 0.0f) {
  auto [k1, k2] = mx::random::split(mx::random::key(seed));
  return {mx::random::randint(0, 32, {2, 8}, mx::int32, k1),
          mx::random::randint(0, 32, {2, 8}, mx::int32, k2), mx::array(poison)};
}

std::unique_ptr<ft::Optimizer> make(const std::string& name, float lr) {
  ft::OptimizerConfig c;
  c.name = name;
  c.learning_rate = lr;
  return ft::make_optimizer(c);
}

// A tiny model with seed 7's weights in dtype.
std::unique_ptr<ft::models::CausalLM> model_in(mx::Dtype dtype) {
  ft::Rng rng(7);
  auto model = ft::models::build_model(tiny_config(), rng);
  model->cast(dtype);
  mx::eval(model->parameters().arrays());
  return model;
}

float max_abs(const mx::array& a) {
  return mx::max(mx::abs(mx::astype(a, mx::float32))).item<float>();
}

bool all_equal(const ft::ParamMap& a, const ft::ParamMap& b) {
  for (const auto& [name, value] : a)
    if (!mx::array_equal(value, b.at(name)).item<bool>()) return false;
  return true;
}

// One SGD step of the low-precision model against the same step in f32, from the same
// (rounded) weights: the update each master received must equal the f32 update within
// the low dtype's tolerance, the masters must be f32 and the model's arrays the masters
// rounded to its dtype.
void expect_step_matches_f32(mx::Dtype dtype, std::optional<ft::LossScaleConfig> scaling,
                             float tolerance) {
  ft::testing::OnCpu cpu;
  auto low = model_in(dtype);
  auto reference = model_in(mx::float32);
  reference->load(ft::tree_map(low->parameters(),
                               [](const mx::array& a) { return mx::astype(a, mx::float32); }));
  ft::ParamMap start = reference->parameters();
  auto o1 = make("sgd", 1e-2f), o2 = make("sgd", 1e-2f);
  ft::StepConfig config;
  config.loss_scale = scaling;
  ft::TrainStep low_step(*low, llama_loss, *o1, config);
  ft::TrainStep ref_step(*reference, llama_loss, *o2);
  ft::Batch batch = make_batch(3);
  auto key = mx::random::key(0);
  ft::StepResult r_low = low_step.run({batch}, {key});
  ft::StepResult r_ref = ref_step.run({batch}, {key});
  EXPECT_FALSE(r_low.skipped);
  EXPECT_NEAR(r_low.loss, r_ref.loss, tolerance * r_ref.loss);
  EXPECT_NEAR(r_low.grad_norm, r_ref.grad_norm, tolerance * r_ref.grad_norm);

  const ft::ParamMap& masters = low_step.masters();
  ft::ParamMap working = low->parameters();
  ASSERT_EQ(masters.size(), working.size());
  int sub_ulp = 0;  // elements whose update the low dtype alone would have lost
  for (const auto& [name, master] : masters) {
    EXPECT_EQ(master.dtype(), mx::float32) << name;
    EXPECT_EQ(working.at(name).dtype(), dtype) << name;
    EXPECT_TRUE(mx::array_equal(working.at(name), mx::astype(master, dtype)).item<bool>()) << name;
    mx::array update_low = master - start.at(name);
    mx::array update_ref = reference->parameters().at(name) - start.at(name);
    float scale = max_abs(update_ref);
    ASSERT_GT(scale, 0.0f) << name;
    EXPECT_LE(max_abs(update_low - update_ref), tolerance * scale + 1e-7f) << name;
    mx::array lost =
        mx::logical_and(mx::not_equal(update_low, mx::array(0.0f)),
                        mx::equal(working.at(name), mx::astype(start.at(name), dtype)));
    sub_ulp += mx::sum(mx::astype(lost, mx::int32)).item<int>();
  }
  // Without masters those updates would have vanished; the test would prove little if
  // there were none.
  EXPECT_GT(sub_ulp, 0);
  for (const auto& [name, value] : o1->state()) {
    if (name == "step") continue;
    EXPECT_EQ(value.dtype(), mx::float32) << name;
  }
}

}  // namespace

TEST(Precision, ParsesComputeDtypes) {
  EXPECT_EQ(ft::parse_float_dtype("float32"), mx::float32);
  EXPECT_EQ(ft::parse_float_dtype("bfloat16"), mx::bfloat16);
  EXPECT_EQ(ft::parse_float_dtype("float16"), mx::float16);
  ft::testing::expect_error([] { ft::parse_float_dtype("fp8"); }, "unknown dtype 'fp8'");
  EXPECT_EQ(ft::master_dtype(mx::bfloat16), mx::float32);
  EXPECT_EQ(ft::master_dtype(mx::float16), mx::float32);
  EXPECT_EQ(ft::master_dtype(mx::float64), mx::float64);
}

TEST(Precision, AllFiniteFindsInfAndNan) {
  ft::ParamMap clean{{"a", mx::ones({3})}, {"b", mx::zeros({2, 2}, mx::float16)}};
  EXPECT_TRUE(ft::all_finite(clean).item<bool>());
  float inf = INFINITY;
  ft::ParamMap with_inf = clean;
  with_inf.set("b", mx::array({1.0f, inf}, {2}));
  EXPECT_FALSE(ft::all_finite(with_inf).item<bool>());
  ft::ParamMap with_nan = clean;
  with_nan.set("a", mx::array({NAN, 1.0f, 2.0f}, {3}));
  EXPECT_FALSE(ft::all_finite(with_nan).item<bool>());
}

TEST(Precision, Bf16StepWithF32MastersMatchesF32Step) {
  expect_step_matches_f32(mx::bfloat16, std::nullopt, 3e-2f);
}

TEST(Precision, Fp16StepWithLossScalingMatchesF32Step) {
  // 2^8: large enough to matter, small enough that this model's gradients do not overflow.
  expect_step_matches_f32(mx::float16, ft::LossScaleConfig{.initial_scale = 256.0f}, 5e-3f);
}

TEST(LossScaler, HalvesOnOverflowAndDoublesAfterTheGrowthInterval) {
  ft::LossScaler scaler;
  EXPECT_EQ(scaler.scale(), 32768.0f);
  EXPECT_EQ(scaler.config().growth_interval, 2000);
  scaler = ft::LossScaler({.initial_scale = 1024.0f, .growth_interval = 3});
  scaler.update(false);
  EXPECT_EQ(scaler.scale(), 512.0f);
  scaler.update(true);
  scaler.update(true);
  EXPECT_EQ(scaler.scale(), 512.0f);
  EXPECT_EQ(scaler.good_steps(), 2);
  scaler.update(false);  // an overflow restarts the count
  EXPECT_EQ(scaler.scale(), 256.0f);
  EXPECT_EQ(scaler.good_steps(), 0);
  for (int i = 0; i < 3; ++i) scaler.update(true);
  EXPECT_EQ(scaler.scale(), 512.0f);
  EXPECT_EQ(scaler.good_steps(), 0);
  for (int i = 0; i < 6; ++i) scaler.update(true);
  EXPECT_EQ(scaler.scale(), 2048.0f);
  scaler.load(8.0f, 2);
  scaler.update(true);
  EXPECT_EQ(scaler.scale(), 16.0f);
}

TEST(LossScaler, BadSettingsAndEndlessOverflowAreErrors) {
  ft::testing::expect_error([] { ft::LossScaler({.initial_scale = 0.0f}); }, "initial_scale");
  ft::testing::expect_error([] { ft::LossScaler({.growth_interval = 0}); }, "growth_interval");
  ft::LossScaler scaler({.initial_scale = 1.0f});
  ft::testing::expect_error([&] { scaler.load(-1.0f, 0); }, "scale must be positive");
  ft::testing::expect_error(
      [&] {
        for (int i = 0; i < 30; ++i) scaler.update(false);
      },
      "overflowed at every loss scale");
}

// An overflowing step changes nothing but the scale; clean steps update and, after
// growth_interval of them, double it.
TEST(LossScaler, TrainStepSkipsTheUpdateOfAnOverflowingStep) {
  ft::testing::OnCpu cpu;
  auto model = model_in(mx::float16);
  auto opt = make("adamw", 1e-2f);
  ft::StepConfig config;
  config.loss_scale = ft::LossScaleConfig{.initial_scale = 64.0f, .growth_interval = 2};
  ft::TrainStep step(*model, llama_loss, *opt, config);
  auto key = mx::random::key(0);
  ft::ParamMap before = model->parameters();

  ft::StepResult r = step.run({make_batch(1), make_batch(2, 1e30f)}, {key, key});
  EXPECT_TRUE(r.skipped);
  EXPECT_EQ(r.loss_scale, 64.0f);
  EXPECT_TRUE(std::isfinite(r.loss));  // the loss was fine, its gradient overflowed
  EXPECT_EQ(step.loss_scaler()->scale(), 32.0f);
  EXPECT_EQ(opt->step(), 0);
  EXPECT_TRUE(opt->state().size() <= 1);  // no moments were made
  EXPECT_TRUE(all_equal(before, model->parameters()));
  for (const auto& [name, master] : step.masters())
    EXPECT_TRUE(mx::array_equal(master, mx::astype(before.at(name), mx::float32)).item<bool>());

  r = step.run({make_batch(1)}, {key});
  EXPECT_FALSE(r.skipped);
  EXPECT_EQ(r.loss_scale, 32.0f);
  EXPECT_EQ(opt->step(), 1);
  EXPECT_FALSE(all_equal(before, model->parameters()));
  EXPECT_EQ(step.loss_scaler()->scale(), 32.0f);
  r = step.run({make_batch(2)}, {key});
  EXPECT_FALSE(r.skipped);
  EXPECT_EQ(step.loss_scaler()->scale(), 64.0f);  // two clean steps in a row
  r = step.run({make_batch(2, 1e30f)}, {key});
  EXPECT_TRUE(r.skipped);
  EXPECT_EQ(step.loss_scaler()->scale(), 32.0f);
  EXPECT_EQ(opt->step(), 2);
}

// Loading masters (a checkpoint) writes them into the model in its dtype, and a
// parameter replaced from outside is taken as the new master.
TEST(Precision, MastersFollowLoadsAndOutsideUpdates) {
  ft::testing::OnCpu cpu;
  auto model = model_in(mx::bfloat16);
  auto opt = make("sgd", 1e-2f);
  ft::TrainStep step(*model, llama_loss, *opt);
  const std::string name = "model.layers.0.mlp.up_proj.weight";
  mx::array fine =
      mx::random::normal(model->parameters().at(name).shape(), mx::float32, mx::random::key(5)) *
      1e-3f;
  ft::ParamMap masters = step.masters();
  masters.set(name, fine);
  step.load_masters(masters);
  EXPECT_TRUE(mx::array_equal(step.masters().at(name), fine).item<bool>());
  EXPECT_TRUE(
      mx::array_equal(model->parameters().at(name), mx::astype(fine, mx::bfloat16)).item<bool>());

  mx::array outside = mx::ones(fine.shape(), mx::bfloat16);
  model->update({{name, outside}});
  EXPECT_TRUE(mx::array_equal(step.masters().at(name), mx::ones(fine.shape())).item<bool>());

  masters.erase(name);
  ft::testing::expect_error([&] { step.load_masters(masters); }, name);
  masters.set(name, mx::zeros({3}));
  ft::testing::expect_error([&] { step.load_masters(masters); }, "(shape)");
}

// Without masters the optimizer updates the bf16 weights themselves: one AdamW step
// equals the f32 update of the same weights and gradients rounded to bf16, the model
// holds those arrays, and no f32 copy exists.
TEST(Precision, WithoutMastersTheBf16WeightsAreUpdatedInPlace) {
  ft::testing::OnCpu cpu;
  auto model = model_in(mx::bfloat16);
  const ft::ParamMap start = model->parameters();
  auto opt = make("adamw", 1e-2f), reference = make("adamw", 1e-2f);
  ft::StepConfig config;
  config.master_weights = false;
  ft::TrainStep step(*model, llama_loss, *opt, config);
  ft::Batch batch = make_batch(3);
  auto key = mx::random::key(0);
  auto [loss, grads] = step.loss_and_grads(batch, key);
  ft::ParamMap expected = reference->update(
      ft::tree_map(start, [](const mx::array& a) { return mx::astype(a, mx::float32); }), grads,
      mx::array(1.0f) / mx::astype(loss.tokens, mx::float32));
  step.run({batch}, {key});
  int changed = 0;
  for (const auto& [name, value] : model->parameters()) {
    EXPECT_EQ(value.dtype(), mx::bfloat16) << name;
    EXPECT_EQ(step.masters().at(name).dtype(), mx::bfloat16) << name;
    EXPECT_TRUE(mx::array_equal(value, mx::astype(expected.at(name), mx::bfloat16)).item<bool>())
        << name;
    changed += !mx::array_equal(value, start.at(name)).item<bool>();
  }
  EXPECT_GT(changed, 0);
}
