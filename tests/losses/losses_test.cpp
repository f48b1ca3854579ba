// ft::train losses against torch.nn.functional (tests/golden/make_loss_fixtures.py).
#include <gtest/gtest.h>

#include "tests/test_util.h"

#include <cmath>
#include <string>

#include <mlx/ops.h>
#include <mlx/transforms.h>

#include "ft/core/error.h"
#include "ft/core/param_map.h"
#include "ft/train/losses.h"

namespace mx = mlx::core;
using ft::train::CrossEntropyOptions;
using ft::train::KlDivOptions;
using ft::train::Reduction;

namespace {

const ft::ParamMap& fixtures() {
  static const ft::ParamMap p =
      ft::ParamMap::load_safetensors(std::string(FT_TEST_DATA) + "/losses/losses.safetensors");
  return p;
}

mx::array fx(const std::string& name) {
  return fixtures().at(name);
}

::testing::AssertionResult close(const mx::array& actual, const mx::array& expected,
                                 double atol = 1e-5, double rtol = 1e-5) {
  if (actual.shape() != expected.shape()) {
    return ::testing::AssertionFailure()
           << "shapes differ: " << actual.ndim() << "-D " << actual.size() << " vs "
           << expected.ndim() << "-D " << expected.size();
  }
  ft::testing::OnCpu on_cpu;
  auto a = mx::astype(actual, mx::float64), e = mx::astype(expected, mx::float64);
  double max_err = mx::max(mx::abs(mx::subtract(a, e))).item<double>();
  if (mx::allclose(a, e, rtol, atol).item<bool>()) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "max abs difference " << max_err;
}

template <typename F>
void expect_error(F f, const std::string& place, const std::string& fragment) {
  try {
    f();
    ADD_FAILURE() << "expected ft::Error mentioning '" << fragment << "'";
  } catch (const ft::Error& e) {
    EXPECT_EQ(e.place(), place);
    EXPECT_NE(std::string(e.fact()).find(fragment), std::string::npos) << e.what();
  }
}

}  // namespace

TEST(CrossEntropy, MatchesTorchForEachReduction) {
  auto logits = fx("ce.logits"), targets = fx("ce.targets");
  for (auto [name, reduction] :
       {std::pair{"mean", Reduction::mean}, std::pair{"sum", Reduction::sum},
        std::pair{"none", Reduction::none}}) {
    SCOPED_TRACE(name);
    auto loss = ft::train::cross_entropy(logits, targets, {-100, 0.0f, reduction});
    EXPECT_EQ(loss.dtype(), mx::float32);
    EXPECT_TRUE(close(loss, fx(std::string("ce.") + name)));
  }
}

TEST(CrossEntropy, LabelSmoothingMatchesTorch) {
  auto logits = fx("ce.logits"), targets = fx("ce.targets");
  for (auto [name, reduction] :
       {std::pair{"mean", Reduction::mean}, std::pair{"sum", Reduction::sum},
        std::pair{"none", Reduction::none}}) {
    SCOPED_TRACE(name);
    auto loss = ft::train::cross_entropy(logits, targets, {-100, 0.1f, reduction});
    EXPECT_TRUE(close(loss, fx(std::string("ce_ls.") + name)));
  }
}

TEST(CrossEntropy, GradientMatchesTorch) {
  auto targets = fx("ce.targets");
  auto grad = mx::grad([&](const mx::array& logits) {
    return ft::train::cross_entropy(logits, targets, {-100, 0.1f, Reduction::mean});
  })(fx("ce.logits"));
  EXPECT_TRUE(close(grad, fx("ce_ls.mean.grad"), 1e-6));
}

TEST(CrossEntropy, CustomIgnoreIndex) {
  auto loss =
      ft::train::cross_entropy(fx("ce.logits"), fx("ce_ignore3.targets"), {.ignore_index = 3});
  EXPECT_TRUE(close(loss, fx("ce_ignore3.mean")));
}

TEST(CrossEntropy, SumIsMeanTimesValidTokenCount) {
  auto logits = fx("ce.logits"), targets = fx("ce.targets");
  // The fixture ignores two of the 15 tokens.
  auto count = ft::train::num_valid_tokens(targets);
  EXPECT_EQ(count.dtype(), mx::int32);
  EXPECT_EQ(count.item<int>(), 13);
  auto sum = ft::train::cross_entropy(logits, targets, {-100, 0.0f, Reduction::sum});
  auto mean = ft::train::cross_entropy(logits, targets);
  EXPECT_NEAR(sum.item<float>(), mean.item<float>() * 13, 1e-4);
}

TEST(CrossEntropy, Bf16LogitsAreComputedInF32) {
  auto logits = mx::astype(fx("ce.logits"), mx::bfloat16), targets = fx("ce.targets");
  auto loss = ft::train::cross_entropy(logits, targets);
  EXPECT_EQ(loss.dtype(), mx::float32);
  // The same bf16 values upcast first: only the rounding of the inputs may differ from f32.
  EXPECT_TRUE(
      close(loss, ft::train::cross_entropy(mx::astype(logits, mx::float32), targets), 1e-6));
}

TEST(CrossEntropy, AllIgnoredGivesNanMeanAndZeroSum) {
  auto logits = mx::zeros({2, 4});
  auto targets = mx::array({-100, -100});
  EXPECT_TRUE(std::isnan(ft::train::cross_entropy(logits, targets).item<float>()));
  EXPECT_EQ(ft::train::cross_entropy(logits, targets, {-100, 0.0f, Reduction::sum}).item<float>(),
            0.0f);
}

TEST(CrossEntropy, BadInputIsAnError) {
  auto logits = mx::zeros({2, 3, 5});
  expect_error(
      [&] {
        ft::train::cross_entropy(logits, mx::zeros({2, 4}, mx::int32));
      },
      "cross_entropy", "targets have shape (2, 4)");
  expect_error(
      [&] {
        ft::train::cross_entropy(logits, mx::zeros({2, 3}));
      },
      "cross_entropy", "integer");
  expect_error(
      [&] {
        ft::train::cross_entropy(mx::zeros({2, 3}, mx::int32), mx::zeros({2}, mx::int32));
      },
      "cross_entropy", "floating");
  expect_error(
      [&] {
        ft::train::cross_entropy(logits, mx::zeros({2, 3}, mx::int32), {.label_smoothing = 1.5f});
      },
      "cross_entropy", "label_smoothing");
}

TEST(Reduction, ParsesNamesAndRejectsOthers) {
  EXPECT_EQ(ft::train::parse_reduction("mean"), Reduction::mean);
  EXPECT_EQ(ft::train::parse_reduction("sum"), Reduction::sum);
  EXPECT_EQ(ft::train::parse_reduction("none"), Reduction::none);
  EXPECT_STREQ(ft::train::reduction_name(Reduction::sum), "sum");
  expect_error([] { ft::train::parse_reduction("avg"); }, "loss", "unknown reduction 'avg'");
}

TEST(KlDiv, MatchesTorchWithTemperatureAndMask) {
  auto student = fx("kl.student"), teacher = fx("kl.teacher");
  EXPECT_TRUE(close(ft::train::kl_div(student, teacher), fx("kl_t1.mean")));
  KlDivOptions masked{.temperature = 2.0f, .mask = fx("kl.mask")};
  EXPECT_TRUE(close(ft::train::kl_div(student, teacher, masked), fx("kl_t2.masked_mean")));
  EXPECT_TRUE(close(
      ft::train::kl_div(student, teacher, {.temperature = 2.0f, .reduction = Reduction::none}),
      fx("kl_t2.none")));
}

TEST(KlDiv, IsZeroForEqualLogitsAndTeacherGetsNoGradient) {
  auto student = fx("kl.student");
  EXPECT_NEAR(ft::train::kl_div(student, student, {.temperature = 3.0f}).item<float>(), 0.0f, 1e-6);
  auto [loss, grads] = mx::value_and_grad(
      [](const std::vector<mx::array>& in) {
        return std::vector<mx::array>{ft::train::kl_div(in[0], in[1], {.temperature = 2.0f})};
      },
      std::vector<int>{0, 1})({student, fx("kl.teacher")});
  EXPECT_GT(mx::max(mx::abs(grads[0])).item<float>(), 1e-4f);
  EXPECT_EQ(mx::max(mx::abs(grads[1])).item<float>(), 0.0f);
}

TEST(KlDiv, BadInputIsAnError) {
  auto s = mx::zeros({2, 3, 5});
  expect_error([&] { ft::train::kl_div(s, s, {.temperature = 0.0f}); }, "kl_div", "temperature");
  expect_error([&] { ft::train::kl_div(s, s, {.temperature = -1.0f}); }, "kl_div", "temperature");
  expect_error([&] { ft::train::kl_div(s, mx::zeros({2, 3, 4})); }, "kl_div", "teacher");
  expect_error([&] { ft::train::kl_div(s, s, {.mask = mx::ones({3, 2})}); }, "kl_div", "mask");
}

TEST(Mse, MatchesTorch) {
  auto pred = fx("mse.pred"), target = fx("mse.target");
  EXPECT_TRUE(close(ft::train::mse(pred, target), fx("mse.mean")));
  EXPECT_TRUE(close(ft::train::mse(pred, target, Reduction::sum), fx("mse.sum")));
  auto none = ft::train::mse(pred, target, Reduction::none);
  EXPECT_TRUE(close(mx::mean(none), fx("mse.mean")));
  expect_error([&] { ft::train::mse(pred, mx::zeros({3, 4})); }, "mse", "target has shape (3, 4)");
}

TEST(TokenAccuracy, MatchesTorch) {
  auto acc = ft::train::token_accuracy(fx("ce.logits"), fx("ce.targets"));
  EXPECT_EQ(acc.dtype(), mx::float32);
  EXPECT_TRUE(close(acc, fx("accuracy")));
}

TEST(TokenAccuracy, CountsOnlyNonIgnoredTokens) {
  // argmax per row: 2, 0, 1; targets 2 (right), -100 (ignored), 0 (wrong): 1 of 2.
  auto logits = mx::array({0.f, 1.f, 5.f, 9.f, 1.f, 2.f, 0.f, 3.f, 1.f}, {3, 3});
  auto targets = mx::array({2, -100, 0});
  EXPECT_FLOAT_EQ(ft::train::token_accuracy(logits, targets).item<float>(), 0.5f);
  expect_error(
      [&] {
        ft::train::token_accuracy(logits, mx::array({1, 2}));
      },
      "token_accuracy", "targets have shape");
}
