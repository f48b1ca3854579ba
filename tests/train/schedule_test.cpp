#include <gtest/gtest.h>

#include "tests/test_util.h"

#include <cmath>
#include <fstream>
#include <numbers>

#include <nlohmann/json.hpp>

#include "ft/core/error.h"
#include "ft/train/schedule.h"

using nlohmann::json;

namespace {

ft::ScheduleConfig config_from_json(const json& j) {
  ft::ScheduleConfig c;
  c.name = j.at("name");
  c.learning_rate = j.at("learning_rate");
  if (j.contains("end_value")) c.end_value = j["end_value"];
  if (j.contains("decay_steps")) c.decay_steps = j["decay_steps"];
  if (j.contains("step_size")) c.step_size = j["step_size"];
  if (j.contains("decay_rate")) c.decay_rate = j["decay_rate"];
  if (j.contains("warmup_steps")) c.warmup_steps = j["warmup_steps"];
  return c;
}

void expect_rate(double got, double want, const std::string& what) {
  EXPECT_NEAR(got, want, 1e-6 * std::abs(want) + 1e-12) << what;
}


}  // namespace

// Against transformers' warmup schedules and torch's StepLR / ExponentialLR.
TEST(Schedule, MatchesPyTorchSchedulers) {
  std::ifstream in(std::string(FT_TEST_DATA) + "/optimizers/schedules.json");
  ASSERT_TRUE(in.good());
  const json meta = json::parse(in);
  ASSERT_EQ(meta.at("cases").size(), 5u);
  for (const auto& c : meta.at("cases")) {
    const std::string id = c.at("id");
    ft::Schedule s = ft::make_schedule(config_from_json(c.at("config")));
    const auto& values = c.at("values");
    ASSERT_GE(values.size(), 21u);
    for (size_t k = 0; k < values.size(); ++k)
      expect_rate(s(static_cast<int64_t>(k)), values[k].get<double>(),
                  id + " step " + std::to_string(k));
  }
  // The convenience form gives the same as the config form.
  ft::Schedule wc = ft::warmup_cosine(3e-4f, 5, 30);
  const auto& first = meta["cases"][0];
  ASSERT_EQ(first["id"], "warmup_cosine");
  for (size_t k = 0; k < first["values"].size(); ++k)
    expect_rate(wc(static_cast<int64_t>(k)), first["values"][k].get<double>(), "warmup_cosine");
}

TEST(Schedule, HandComputedValues) {
  ft::Schedule constant = ft::constant_schedule(0.5f);
  EXPECT_EQ(constant(0), 0.5f);
  EXPECT_EQ(constant(1000), 0.5f);

  ft::Schedule lin = ft::linear_schedule(1.0f, 0.2f, 8);
  expect_rate(lin(0), 1.0, "linear 0");
  expect_rate(lin(2), 1.0 - 0.8 * 2 / 8, "linear 2");
  expect_rate(lin(8), 0.2, "linear 8");
  expect_rate(lin(50), 0.2, "linear past the end");

  ft::Schedule warm = ft::linear_warmup(1e-3f, 10, 1e-5f);
  expect_rate(warm(0), 1e-5, "warmup 0");
  expect_rate(warm(5), 1e-5 + (1e-3 - 1e-5) * 0.5, "warmup 5");
  expect_rate(warm(12), 1e-3, "warmup after");

  ft::Schedule cosine = ft::cosine_decay(1.0f, 10, 0.1f);
  expect_rate(cosine(0), 1.0, "cosine 0");
  expect_rate(cosine(5), 0.55, "cosine half way is the mean");
  expect_rate(cosine(3), 0.1 + 0.9 * 0.5 * (1 + std::cos(std::numbers::pi * 0.3)), "cosine 3");
  expect_rate(cosine(10), 0.1, "cosine end");
  expect_rate(cosine(99), 0.1, "cosine floor");

  ft::Schedule steps = ft::step_decay(0.8f, 0.5f, 3);
  expect_rate(steps(2), 0.8, "step 2");
  expect_rate(steps(3), 0.4, "step 3");
  expect_rate(steps(7), 0.2, "step 7");

  ft::Schedule expo = ft::exponential_decay(2.0f, 0.9f);
  expect_rate(expo(3), 2.0 * 0.9 * 0.9 * 0.9, "exponential 3");

  // Each joined schedule counts its steps from its own boundary.
  ft::Schedule joined =
      ft::join_schedules({ft::linear_schedule(0.0f, 1.0f, 4), ft::constant_schedule(1.0f),
                          ft::exponential_decay(1.0f, 0.5f)},
                         {4, 10});
  expect_rate(joined(1), 0.25, "joined 1");
  expect_rate(joined(4), 1.0, "joined 4");
  expect_rate(joined(9), 1.0, "joined 9");
  expect_rate(joined(10), 1.0, "joined 10");
  expect_rate(joined(12), 0.25, "joined 12");

  ft::ScheduleConfig c;
  c.name = "constant";
  c.learning_rate = 2e-4f;
  c.warmup_steps = 4;
  c.warmup_init = 1e-5f;
  ft::Schedule warmed = ft::make_schedule(c);
  expect_rate(warmed(2), 1e-5 + (2e-4 - 1e-5) * 0.5, "warmup then constant");
  expect_rate(warmed(4), 2e-4, "after warmup");
}

TEST(Schedule, BadValuesAreErrors) {
  ft::ScheduleConfig c;
  c.name = "cosine";
  ft::testing::expect_error([&] { ft::make_schedule(c); },
               "[schedule] unknown schedule 'cosine'; known: constant, linear_decay, "
               "cosine_decay, step_decay, exponential_decay");
  c.name = "cosine_decay";
  ft::testing::expect_error([&] { ft::make_schedule(c); }, "cosine decay steps must be positive, got 0");
  c.decay_steps = 10;
  c.learning_rate = -1.0f;
  ft::testing::expect_error([&] { ft::make_schedule(c); }, "learning_rate must be positive");
  c.learning_rate = 1e-3f;
  c.warmup_steps = -2;
  ft::testing::expect_error([&] { ft::make_schedule(c); }, "warmup_steps must be >= 0");
  c = {};
  c.name = "step_decay";
  c.step_size = 5;
  c.decay_rate = 0.0f;
  ft::testing::expect_error([&] { ft::make_schedule(c); }, "decay rate must be positive");
  ft::testing::expect_error([&] { ft::join_schedules({1.0f, 2.0f}, {}); }, "needs 1 boundaries for 2 schedules");
  ft::testing::expect_error([&] { ft::join_schedules({1.0f, 2.0f, 3.0f}, {5, 5}); }, "strictly increasing");
  ft::testing::expect_error([&] { ft::warmup_cosine(1e-3f, 10, 10); }, "total steps (10) must exceed warmup");
}
