// ft::train::distillation_loss against torch (tests/golden/make_distill_fixtures.py) and
// against the formula evaluated token by token in double on the host.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include <mlx/ops.h>
#include <mlx/transforms.h>

#include "ft/core/error.h"
#include "ft/core/param_map.h"
#include "ft/train/distill.h"
#include "tests/test_util.h"

namespace mx = mlx::core;
using ft::train::DistillOptions;

namespace {

const ft::ParamMap& fixtures() {
  static const ft::ParamMap p =
      ft::ParamMap::load_safetensors(std::string(FT_TEST_DATA) + "/losses/distill.safetensors");
  return p;
}

mx::array fx(const std::string& name) {
  return fixtures().at(name);
}

struct Case {
  float weight, temperature;
  std::string tag;
};
const std::vector<Case> kCases = {{0.5f, 2.0f, "w50_t2"},
                                  {0.25f, 1.0f, "w25_t1"},
                                  {1.0f, 3.0f, "w100_t3"},
                                  {0.0f, 2.0f, "w0_t2"}};

std::vector<double> host(const mx::array& a) {
  mx::array d = mx::astype(a, mx::float64, mx::Device::cpu);
  mx::eval(d);
  return {d.data<double>(), d.data<double>() + d.size()};
}

// log softmax(z / t) of one row, in double.
std::vector<double> log_softmax(const double* z, int n, double t) {
  double top = -INFINITY;
  for (int i = 0; i < n; ++i) top = std::max(top, z[i] / t);
  double sum = 0;
  for (int i = 0; i < n; ++i) sum += std::exp(z[i] / t - top);
  std::vector<double> out(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) out[size_t(i)] = z[i] / t - top - std::log(sum);
  return out;
}

// The documented formula, term by term.
double by_hand(const mx::array& student, const mx::array& teacher, const mx::array& targets,
               double w, double t) {
  int vocab = student.shape(-1);
  auto s = host(student), q = host(teacher), y = host(targets);
  double total = 0;
  for (size_t tok = 0; tok < y.size(); ++tok) {
    if (y[tok] == -100) continue;
    const double* zs = &s[tok * size_t(vocab)];
    const double* zt = &q[tok * size_t(vocab)];
    double ce = -log_softmax(zs, vocab, 1.0)[size_t(y[tok])];
    auto ls = log_softmax(zs, vocab, t), lt = log_softmax(zt, vocab, t);
    double kl = 0;
    for (size_t c = 0; c < size_t(vocab); ++c) kl += std::exp(lt[c]) * (lt[c] - ls[c]);
    total += (1 - w) * ce + w * t * t * kl;
  }
  return total;
}

}  // namespace

TEST(DistillationLoss, MatchesTorchLossAndGradient) {
  ft::testing::OnCpu cpu;
  for (const auto& c : kCases) {
    DistillOptions options{.weight = c.weight, .temperature = c.temperature};
    auto fn = [&](const std::vector<mx::array>& in) {
      return std::vector<mx::array>{
          ft::train::distillation_loss(in[0], in[1], fx("targets"), options)};
    };
    auto [loss, grads] =
        mx::value_and_grad(fn, std::vector<int>{0, 1})({fx("student"), fx("teacher")});
    EXPECT_NEAR(loss[0].item<float>(), fx(c.tag + ".loss").item<float>(), 1e-4) << c.tag;
    EXPECT_TRUE(mx::allclose(grads[0], fx(c.tag + ".grad"), 1e-4, 1e-5).item<bool>()) << c.tag;
    // The teacher is a constant.
    EXPECT_EQ(mx::max(mx::abs(grads[1])).item<float>(), 0.0f) << c.tag;
  }
}

TEST(DistillationLoss, EqualsTheFormulaComputedByHand) {
  ft::testing::OnCpu cpu;
  // The fixture's logits, and bf16 ones (computed in f32 all the same).
  for (mx::Dtype dtype : {mx::float32, mx::bfloat16}) {
    mx::array student = mx::astype(fx("student"), dtype),
              teacher = mx::astype(fx("teacher"), dtype);
    for (const auto& c : kCases) {
      mx::array loss = ft::train::distillation_loss(
          student, teacher, fx("targets"), {.weight = c.weight, .temperature = c.temperature});
      EXPECT_EQ(loss.dtype(), mx::float32);
      double expected = by_hand(student, teacher, fx("targets"), c.weight, c.temperature);
      EXPECT_NEAR(loss.item<float>(), expected, 1e-5 * std::abs(expected) + 1e-5) << c.tag;
    }
  }
}

TEST(DistillationLoss, EqualTeacherLeavesTheWeightedCrossEntropy) {
  mx::array s = fx("student"), y = fx("targets");
  float full = ft::train::distillation_loss(s, fx("teacher"), y, {.weight = 0.0f}).item<float>();
  float self = ft::train::distillation_loss(s, s, y, {.weight = 0.3f}).item<float>();
  EXPECT_NEAR(self, 0.7f * full, 1e-4);
}

TEST(DistillationLoss, BadInputIsAnError) {
  mx::array s = mx::zeros({2, 3, 5});
  mx::array y = mx::zeros({2, 3}, mx::int32);
  ft::testing::expect_error(
      [&] {
        ft::train::distillation_loss(s, mx::zeros({2, 3, 6}), y);
      },
      "the student has 5 vocab entries but the teacher 6");
  ft::testing::expect_error([&] { ft::train::distillation_loss(s, s, y, {.weight = 1.5f}); },
                            "weight must be in [0, 1]");
  ft::testing::expect_error([&] { ft::train::distillation_loss(s, s, y, {.temperature = 0.0f}); },
                            "temperature must be positive");
  ft::testing::expect_error(
      [&] {
        ft::train::distillation_loss(s, s, mx::zeros({3, 2}, mx::int32));
      },
      "targets have shape");
}
