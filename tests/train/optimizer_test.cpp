#include <gtest/gtest.h>

#include "tests/test_util.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>

#include <mlx/ops.h>
#include <mlx/random.h>
#include <nlohmann/json.hpp>

#include "ft/core/error.h"
#include "ft/core/param_map.h"
#include "ft/train/optimizer.h"

namespace mx = mlx::core;
using nlohmann::json;

namespace {

const std::string kDir = std::string(FT_TEST_DATA) + "/optimizers";

json read_json(const std::string& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << path;
  return json::parse(in);
}

ft::OptimizerConfig config_from_json(const json& j) {
  ft::OptimizerConfig c;
  c.name = j.at("name");
  if (j.contains("learning_rate")) c.learning_rate = j["learning_rate"];
  if (j.contains("weight_decay")) c.weight_decay = j["weight_decay"].get<float>();
  if (j.contains("beta1")) c.beta1 = j["beta1"].get<float>();
  if (j.contains("beta2")) c.beta2 = j["beta2"].get<float>();
  if (j.contains("eps")) c.eps = j["eps"];
  if (j.contains("momentum")) c.momentum = j["momentum"];
  if (j.contains("dampening")) c.dampening = j["dampening"];
  if (j.contains("nesterov")) c.nesterov = j["nesterov"];
  if (j.contains("clip_threshold")) c.clip_threshold = j["clip_threshold"];
  if (j.contains("relative_step")) c.relative_step = j["relative_step"];
  if (j.contains("scale_parameter")) c.scale_parameter = j["scale_parameter"];
  if (j.contains("warmup_init")) c.warmup_init = j["warmup_init"];
  return c;
}

// Largest |a - b| / (rtol * |b| + atol) with rtol 1e-6 and atol 1e-7 (an f32 ulp at
// 1, for values near zero left by cancellation): at most 1 passes.
float max_error(const mx::array& a, const mx::array& b) {
  mx::array err = mx::abs(a - b) / (mx::array(1e-6f) * mx::abs(b) + mx::array(1e-7f));
  return mx::max(err).item<float>();
}

// Two parameters and fixed gradients, one set per step.
ft::ParamMap small_params() {
  auto k = mx::random::key(3);
  return {{"a.weight", mx::random::normal({4, 3}, mx::float32, 0, 1, k)},
          {"b.bias", mx::random::normal({6}, mx::float32, 0, 1, mx::random::key(4))}};
}

ft::ParamMap small_grads(int step) {
  return {{"a.weight", mx::random::normal({4, 3}, mx::float32, 0, 1, mx::random::key(10 + step))},
          {"b.bias", mx::random::normal({6}, mx::float32, 0, 1, mx::random::key(50 + step))}};
}

std::vector<ft::OptimizerConfig> stateful_configs() {
  std::vector<ft::OptimizerConfig> out;
  ft::OptimizerConfig c;
  c.learning_rate = 1e-2f;
  c.name = "sgd";
  c.momentum = 0.9f;
  out.push_back(c);
  c.name = "adam";
  out.push_back(c);
  c.name = "adamw";
  out.push_back(c);
  c.name = "adafactor";
  c.beta1 = 0.9f;
  out.push_back(c);
  c.name = "lion";
  out.push_back(c);
  return out;
}


}  // namespace

TEST(Optimizer, MatchesPyTorchEveryStep) {
  const json meta = read_json(kDir + "/optimizers.json");
  const ft::ParamMap data = ft::ParamMap::load_safetensors(kDir + "/optimizers.safetensors");
  const int steps = meta.at("steps");
  ASSERT_GE(meta.at("cases").size(), 14u);
  for (const auto& c : meta.at("cases")) {
    const std::string id = c.at("id");
    SCOPED_TRACE(id);
    ft::OptimizerConfig config = config_from_json(c.at("config"));
    if (c.contains("schedule")) {
      config.schedule = ft::warmup_cosine(config.learning_rate, c["schedule"]["warmup_steps"],
                                          c["schedule"]["total_steps"]);
    }
    auto opt = ft::make_optimizer(config);
    ft::ParamMap params = data.strip_prefix("params");
    ASSERT_EQ(params.size(), 3u);
    for (int k = 1; k <= steps; ++k) {
      params = opt->update(params, data.strip_prefix("grads." + std::to_string(k)));
      params.eval();
      ASSERT_EQ(opt->step(), k);
      for (const auto& [name, value] : params) {
        const mx::array& want = data.at(id + "." + std::to_string(k) + "." + name);
        ASSERT_EQ(value.shape(), want.shape());
        EXPECT_LE(max_error(value, want), 1.0f) << name << " after step " << k;
      }
    }
  }
}

TEST(Optimizer, SavedStateContinuesBitIdentically) {
  const auto dir = std::filesystem::temp_directory_path() / "ft_optimizer_state_test";
  std::filesystem::create_directories(dir);
  for (const auto& config : stateful_configs()) {
    SCOPED_TRACE(config.name);
    auto a = ft::make_optimizer(config);
    ft::ParamMap params = small_params();
    for (int k = 0; k < 2; ++k) {
      params = a->update(params, small_grads(k));
      params.eval();
    }
    const std::string path = (dir / (config.name + ".safetensors")).string();
    a->state().save_safetensors(path);
    auto b = ft::make_optimizer(config);
    b->load_state(ft::ParamMap::load_safetensors(path));
    EXPECT_EQ(b->step(), 2);
    ft::ParamMap pa = params, pb = params;
    for (int k = 2; k < 5; ++k) {
      pa = a->update(pa, small_grads(k));
      pb = b->update(pb, small_grads(k));
      pa.eval();
      pb.eval();
      for (const auto& [name, value] : pa)
        EXPECT_TRUE(mx::array_equal(value, pb.at(name)).item<bool>()) << name << " step " << k;
    }
    // The state moved on too, and keeps the same names.
    std::vector<std::string> names_a = a->state().names(), names_b = b->state().names();
    std::sort(names_a.begin(), names_a.end());
    std::sort(names_b.begin(), names_b.end());
    EXPECT_EQ(names_a, names_b);
    EXPECT_FALSE(mx::array_equal(pa.at("a.weight"), params.at("a.weight")).item<bool>());
  }
  std::filesystem::remove_all(dir);
}

TEST(Optimizer, StateNamesFollowParameters) {
  ft::OptimizerConfig c;
  c.name = "adafactor";
  c.learning_rate = 1e-3f;
  auto opt = ft::make_optimizer(c);
  opt->update(small_params(), small_grads(0));
  ft::ParamMap s = opt->state();
  EXPECT_EQ(s.names(),
            (std::vector<std::string>{"a.weight.exp_avg_sq_row", "a.weight.exp_avg_sq_col",
                                      "b.bias.exp_avg_sq", "step"}));
  EXPECT_EQ(s.at("a.weight.exp_avg_sq_row").shape(), (mx::Shape{4}));
  EXPECT_EQ(s.at("a.weight.exp_avg_sq_col").shape(), (mx::Shape{3}));
  EXPECT_EQ(s.at("step").item<int64_t>(), 1);
  EXPECT_EQ(s.at("b.bias.exp_avg_sq").dtype(), mx::float32);
}

TEST(Optimizer, UpdatesOnlyNamedParametersAndStaysLazy) {
  ft::OptimizerConfig c;
  c.name = "adamw";
  c.learning_rate = 1e-2f;
  auto opt = ft::make_optimizer(c);
  ft::ParamMap params = small_params();
  params.eval();
  ft::ParamMap grads;
  grads.set("b.bias", small_grads(0).at("b.bias"));
  ft::ParamMap out = opt->update(params, grads);
  EXPECT_EQ(out.names(), params.names());
  // Nothing has been computed yet: the training step evaluates everything at once.
  EXPECT_FALSE(out.at("b.bias").is_available());
  EXPECT_EQ(out.at("a.weight").id(), params.at("a.weight").id());
  out.eval();
  EXPECT_FALSE(mx::array_equal(out.at("b.bias"), params.at("b.bias")).item<bool>());
  EXPECT_EQ(opt->state().names(),
            (std::vector<std::string>{"b.bias.exp_avg", "b.bias.exp_avg_sq", "step"}));
}

// update()'s grad_factor multiplies the gradients inside the rule: the same parameters and
// state, bit for bit, as gradients multiplied beforehand, for every optimizer, over steps.
TEST(Optimizer, GradFactorEqualsScaledGradients) {
  std::vector<ft::OptimizerConfig> configs = stateful_configs();
  ft::OptimizerConfig plain_sgd;
  plain_sgd.name = "sgd";
  plain_sgd.learning_rate = 0.1f;
  configs.push_back(plain_sgd);
  for (const auto& c : configs) {
    auto a = ft::make_optimizer(c), b = ft::make_optimizer(c);
    ft::ParamMap pa = small_params(), pb = small_params();
    for (int step = 0; step < 3; ++step) {
      const float factor = 0.37f * static_cast<float>(step + 1);
      ft::ParamMap scaled = ft::tree_map(
          small_grads(step), [&](const mx::array& g) { return g * mx::array(factor); });
      pa = a->update(pa, small_grads(step), mx::array(factor));
      pb = b->update(pb, scaled);
    }
    for (const auto& [name, value] : pa)
      EXPECT_TRUE(mx::array_equal(value, pb.at(name)).item<bool>()) << c.name << " " << name;
    for (const auto& [name, value] : a->state())
      EXPECT_TRUE(mx::array_equal(value, b->state().at(name)).item<bool>()) << c.name << " " << name;
    EXPECT_FALSE(mx::array_equal(pa.at("a.weight"), small_params().at("a.weight")).item<bool>());
  }
}

TEST(Optimizer, Bf16GradientsAreCastAndParamsKeepTheirDtype) {
  ft::OptimizerConfig c;
  c.name = "adam";
  c.learning_rate = 1e-2f;
  ft::ParamMap grads_bf16 =
      ft::tree_map(small_grads(0), [](const mx::array& g) { return mx::astype(g, mx::bfloat16); });
  ft::ParamMap grads_f32 =
      ft::tree_map(grads_bf16, [](const mx::array& g) { return mx::astype(g, mx::float32); });
  auto a = ft::make_optimizer(c);
  auto b = ft::make_optimizer(c);
  ft::ParamMap pa = a->update(small_params(), grads_bf16);
  ft::ParamMap pb = b->update(small_params(), grads_f32);
  for (const auto& [name, value] : pa) {
    EXPECT_EQ(value.dtype(), mx::float32);
    EXPECT_TRUE(mx::array_equal(value, pb.at(name)).item<bool>()) << name;
  }
  // bf16 parameters come back in bf16 while the moments stay in f32.
  auto d = ft::make_optimizer(c);
  ft::ParamMap bf16 =
      ft::tree_map(small_params(), [](const mx::array& p) { return mx::astype(p, mx::bfloat16); });
  ft::ParamMap pd = d->update(bf16, grads_bf16);
  EXPECT_EQ(pd.at("a.weight").dtype(), mx::bfloat16);
  EXPECT_EQ(d->state().at("a.weight.exp_avg").dtype(), mx::float32);
}

// Moments kept in bfloat16 are the f32 moments rounded once per update: each step equals
// an f32 optimizer whose state was rounded to bf16 before it, bit for bit, and the saved
// state is bf16.
TEST(Optimizer, Bf16StateIsTheF32StateRoundedEachStep) {
  for (ft::OptimizerConfig c : stateful_configs()) {
    c.state_dtype = mx::bfloat16;
    auto low = ft::make_optimizer(c);
    c.state_dtype = mx::float32;
    ft::ParamMap pl = small_params(), pr = small_params();
    for (int step = 0; step < 3; ++step) {
      auto reference = ft::make_optimizer(c);
      if (step > 0)
        reference->load_state(ft::tree_map(low->state(), [](const mx::array& s) {
          return s.dtype() == mx::bfloat16 ? mx::astype(s, mx::float32) : s;
        }));
      pl = low->update(pl, small_grads(step));
      pr = reference->update(pr, small_grads(step));
      for (const auto& [name, value] : pl)
        EXPECT_TRUE(mx::array_equal(value, pr.at(name)).item<bool>())
            << c.name << " step " << step << " " << name;
      for (const auto& [name, value] : reference->state()) {
        if (name == "step") continue;
        const mx::array kept = low->state().at(name);
        EXPECT_EQ(kept.dtype(), mx::bfloat16) << c.name << " " << name;
        EXPECT_TRUE(mx::array_equal(kept, mx::astype(value, mx::bfloat16)).item<bool>())
            << c.name << " step " << step << " " << name;
      }
    }
  }
  ft::OptimizerConfig c;
  c.state_dtype = mx::float16;
  ft::testing::expect_error([&] { ft::make_optimizer(c); }, "float32 or bfloat16");
}

TEST(Optimizer, LearningRateFollowsTheSchedule) {
  ft::OptimizerConfig c;
  c.name = "sgd";
  c.schedule = ft::linear_warmup(0.1f, 4);
  auto opt = ft::make_optimizer(c);
  ft::ParamMap params = small_params();
  ft::ParamMap grads = small_grads(0);
  for (int k = 0; k < 6; ++k) {
    EXPECT_FLOAT_EQ(opt->learning_rate(), 0.1f * std::min(k, 4) / 4.0f) << k;
    // Plain SGD moves by exactly lr * grad, so the step shows the rate it used.
    const float lr = opt->learning_rate();
    ft::ParamMap next = opt->update(params, grads);
    mx::array moved = (params.at("b.bias") - next.at("b.bias"));
    EXPECT_TRUE(mx::allclose(moved, grads.at("b.bias") * lr, 1e-5, 1e-7).item<bool>()) << k;
    params = next;
  }

  ft::OptimizerConfig r;
  r.name = "adafactor";
  r.relative_step = true;
  auto rel = ft::make_optimizer(r);
  EXPECT_FLOAT_EQ(rel->learning_rate(), 1e-2f);  // min(1e-2, 1/sqrt(1))
  r.warmup_init = true;
  auto warm = ft::make_optimizer(r);
  EXPECT_FLOAT_EQ(warm->learning_rate(), 1e-6f);
  warm->update(small_params(), small_grads(0));
  EXPECT_FLOAT_EQ(warm->learning_rate(), 2e-6f);
}

TEST(Optimizer, BadConfigsAreErrors) {
  ft::OptimizerConfig c;
  c.name = "adamx";
  ft::testing::expect_error([&] { ft::make_optimizer(c); },
               "[optimizer] unknown optimizer 'adamx'; known: sgd, adam, adamw, adafactor, lion");
  c = {};
  c.learning_rate = 0.0f;
  ft::testing::expect_error([&] { ft::make_optimizer(c); }, "learning rate must be positive, got 0");
  c = {};
  c.weight_decay = -0.1f;
  ft::testing::expect_error([&] { ft::make_optimizer(c); }, "weight decay must be >= 0");
  c = {};
  c.beta1 = 1.0f;
  ft::testing::expect_error([&] { ft::make_optimizer(c); }, "beta1 must be in [0, 1), got 1");
  c = {};
  c.name = "lion";
  c.beta2 = -0.5f;
  ft::testing::expect_error([&] { ft::make_optimizer(c); }, "beta2 must be in [0, 1)");
  c = {};
  c.name = "sgd";
  c.nesterov = true;
  ft::testing::expect_error([&] { ft::make_optimizer(c); }, "nesterov needs momentum > 0");
  c = {};
  c.name = "adafactor";
  c.warmup_init = true;
  ft::testing::expect_error([&] { ft::make_optimizer(c); }, "warmup_init needs relative_step");
  c.relative_step = true;
  c.schedule = ft::constant_schedule(1e-3f);
  ft::testing::expect_error([&] { ft::make_optimizer(c); }, "a schedule cannot be combined");
}

TEST(Optimizer, BadGradientsAreErrors) {
  auto opt = ft::make_optimizer({});
  ft::ParamMap params = small_params();
  ft::testing::expect_error(
      [&] {
        opt->update(params, {{"c.weight", mx::zeros({2})}});
      },
      "gradient for 'c.weight', which is not a parameter");
  ft::testing::expect_error(
      [&] {
        opt->update(params, {{"b.bias", mx::zeros({5})}});
      },
      "gradient for 'b.bias' has shape (5) but the parameter has (6)");
  // A valid gradient before the bad one leaves no state behind either.
  ft::ParamMap mixed{{"a.weight", mx::zeros({4, 3})}, {"b.bias", mx::zeros({5})}};
  EXPECT_THROW(opt->update(params, mixed), ft::Error);
  EXPECT_EQ(opt->step(), 0);
  EXPECT_EQ(opt->state().names(), (std::vector<std::string>{"step"}));
}

TEST(Optimizer, MismatchedStateIsAnError) {
  ft::OptimizerConfig c;
  c.name = "adam";
  auto trained = ft::make_optimizer(c);
  trained->update(small_params(), small_grads(0));
  const ft::ParamMap good = trained->state();

  auto fresh = [&] { return ft::make_optimizer(c); };
  ft::ParamMap no_step = good;
  no_step.erase("step");
  ft::testing::expect_error([&] { fresh()->load_state(no_step); }, "state has no 'step' entry");
  ft::ParamMap odd = good;
  odd.set("a.weight.momentum_buffer", mx::zeros({4, 3}));
  ft::testing::expect_error([&] { fresh()->load_state(odd); },
               "state entry 'a.weight.momentum_buffer' is not '<parameter>.<slot>'");

  // Into an optimizer that has state already: names and shapes must agree.
  auto initialised = fresh();
  initialised->init(small_params());
  ft::ParamMap wrong_shape = good;
  wrong_shape.set("b.bias.exp_avg", mx::zeros({7}));
  ft::testing::expect_error([&] { initialised->load_state(wrong_shape); },
               "loaded state 'b.bias.exp_avg' has shape (7), expected (6)");
  ft::ParamMap missing = good;
  missing.erase("b.bias.exp_avg_sq");
  ft::testing::expect_error([&] { initialised->load_state(missing); }, "loaded state lacks 'b.bias.exp_avg_sq'");

  // Into a fresh optimizer: checked against each parameter at its first update.
  auto f1 = fresh();
  f1->load_state(wrong_shape);
  ft::testing::expect_error(
      [&] { f1->update(small_params(), small_grads(1)); },
      "state 'b.bias.exp_avg' has shape (7) but parameter 'b.bias' of shape (6) needs (6)");
  auto f2 = fresh();
  ft::ParamMap only_a = good.filter("^a\\.|^step$");
  f2->load_state(only_a);
  ft::testing::expect_error([&] { f2->update(small_params(), small_grads(1)); },
               "the loaded state has no entry for parameter 'b.bias'");
  auto f3 = fresh();
  f3->load_state(good);
  EXPECT_NO_THROW(f3->update(small_params(), small_grads(1)));
  EXPECT_EQ(f3->step(), 2);
}
