// Samplers against hand-computed distributions.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <vector>

#include <mlx/ops.h>

#include "ft/generate/sampling.h"
#include "tests/test_util.h"

namespace mx = mlx::core;
using ft::generate::SamplingOptions;

namespace {

std::vector<float> values(const mx::array& a) {
  mx::array f = mx::astype(a, mx::float32);
  f.eval();
  return {f.data<float>(), f.data<float>() + f.size()};
}

// Logits whose softmax is exactly `probs` (up to rounding).
mx::array logits_of(const std::vector<float>& probs) {
  std::vector<float> logs;
  for (float p : probs) logs.push_back(std::log(p));
  return mx::array(logs.data(), {static_cast<int>(logs.size())}, mx::float32);
}

// Which entries survived (finite).
std::vector<bool> kept(const mx::array& filtered) {
  std::vector<bool> out;
  for (float v : values(filtered)) out.push_back(std::isfinite(v));
  return out;
}

}  // namespace

TEST(Sampling, TopPKeepsTheSmallestSetReachingTheMass) {
  // probabilities 0.05, 0.4, 0.1, 0.3, 0.15: sorted 0.4, 0.3, 0.15, 0.1, 0.05 with mass
  // before each 0, 0.4, 0.7, 0.85, 0.95.
  mx::array x = logits_of({0.05f, 0.4f, 0.1f, 0.3f, 0.15f});
  EXPECT_EQ(kept(ft::generate::top_p_filter(x, 0.39f)),
            (std::vector<bool>{false, true, false, false, false}));
  EXPECT_EQ(kept(ft::generate::top_p_filter(x, 0.41f)),
            (std::vector<bool>{false, true, false, true, false}));
  EXPECT_EQ(kept(ft::generate::top_p_filter(x, 0.8f)),
            (std::vector<bool>{false, true, false, true, true}));
  EXPECT_EQ(kept(ft::generate::top_p_filter(x, 0.9f)),
            (std::vector<bool>{false, true, true, true, true}));
  EXPECT_EQ(kept(ft::generate::top_p_filter(x, 0.01f)),
            (std::vector<bool>{false, true, false, false, false}));
  EXPECT_EQ(kept(ft::generate::top_p_filter(x, 1.0f)), std::vector<bool>(5, true));
  // Kept logits are unchanged.
  EXPECT_EQ(values(ft::generate::top_p_filter(x, 0.8f))[3], values(x)[3]);
}

TEST(Sampling, TopKAndMinP) {
  mx::array x = logits_of({0.05f, 0.4f, 0.1f, 0.3f, 0.15f});
  EXPECT_EQ(kept(ft::generate::top_k_filter(x, 2)),
            (std::vector<bool>{false, true, false, true, false}));
  EXPECT_EQ(kept(ft::generate::top_k_filter(x, 9)), std::vector<bool>(5, true));
  // min_p 0.3: threshold 0.3 * 0.4 = 0.12 keeps 0.4, 0.3, 0.15.
  EXPECT_EQ(kept(ft::generate::min_p_filter(x, 0.3f)),
            (std::vector<bool>{false, true, false, true, true}));
  // min_p 0.8: threshold 0.32 keeps only 0.4.
  EXPECT_EQ(kept(ft::generate::min_p_filter(x, 0.8f)),
            (std::vector<bool>{false, true, false, false, false}));
  ft::testing::expect_error([&] { ft::generate::top_k_filter(x, 0); }, "top_k");
}

TEST(Sampling, RepetitionPenaltyDividesPositiveAndMultipliesNegativeLogits) {
  float raw[] = {2.0f, -1.0f, 0.5f, -3.0f};
  mx::array x(raw, {4}, mx::float32);
  auto out = values(ft::generate::apply_repetition_penalty(x, {0, 1, 1}, 2.0f));
  EXPECT_FLOAT_EQ(out[0], 1.0f);   // 2 / 2
  EXPECT_FLOAT_EQ(out[1], -2.0f);  // -1 * 2
  EXPECT_FLOAT_EQ(out[2], 0.5f);   // not seen
  EXPECT_FLOAT_EQ(out[3], -3.0f);  // not seen
}

TEST(Sampling, GreedyTakesTheArgmaxAfterThePenalty) {
  float raw[] = {2.0f, 1.5f, 0.5f};
  mx::array x(raw, {1, 3}, mx::float32);
  ft::generate::Sampler greedy({}, 0);
  EXPECT_EQ(greedy.sample(x, {}), 0);
  ft::generate::Sampler penalized({.repetition_penalty = 2.0f}, 0);
  EXPECT_EQ(penalized.sample(x, {0}), 1);  // 2 / 2 = 1 < 1.5
}

TEST(Sampling, SameSeedSameTokensAndFrequenciesFollowTheDistribution) {
  mx::array x = logits_of({0.05f, 0.4f, 0.1f, 0.3f, 0.15f});
  SamplingOptions options{.temperature = 1.0f, .top_p = 0.8f};
  ft::generate::Sampler a(options, 42), b(options, 42), c(options, 43);
  std::vector<int> from_a, from_b, from_c;
  std::map<int, int> counts;
  const int n = 2000;
  for (int i = 0; i < n; ++i) {
    from_a.push_back(a.sample(x, {}));
    from_b.push_back(b.sample(x, {}));
    from_c.push_back(c.sample(x, {}));
    ++counts[from_a.back()];
  }
  EXPECT_EQ(from_a, from_b);
  EXPECT_NE(from_a, from_c);
  // Only the top-p set {1, 3, 4} is drawn, renormalized to 0.4, 0.3, 0.15 over 0.85.
  EXPECT_EQ(counts.size(), 3u);
  EXPECT_EQ(counts.count(0) + counts.count(2), 0u);
  // Standard errors are about 0.011; 0.04 leaves room without hiding a wrong set.
  EXPECT_NEAR(counts[1] / double(n), 0.4 / 0.85, 0.04);
  EXPECT_NEAR(counts[3] / double(n), 0.3 / 0.85, 0.04);
  EXPECT_NEAR(counts[4] / double(n), 0.15 / 0.85, 0.04);
}

TEST(Sampling, TemperatureSharpensTheDistribution) {
  // temperature 0.5 squares the probabilities: 0.8^2 : 0.2^2 = 16 : 1.
  mx::array x = logits_of({0.8f, 0.2f});
  SamplingOptions options{.temperature = 0.5f};
  auto processed = values(ft::generate::process_logits(x, options, {}));
  EXPECT_NEAR(std::exp(processed[0] - processed[1]), 16.0f, 1e-3f);
}

TEST(Sampling, RejectsOutOfRangeOptions) {
  ft::testing::expect_error([] { ft::generate::Sampler({.temperature = -1.0f}, 0); },
                            "temperature");
  ft::testing::expect_error([] { ft::generate::Sampler({.top_p = 0.0f}, 0); }, "top_p");
  ft::testing::expect_error([] { ft::generate::Sampler({.min_p = 1.5f}, 0); }, "min_p");
  ft::testing::expect_error([] { ft::generate::Sampler({.repetition_penalty = 0.0f}, 0); },
                            "repetition_penalty");
}
