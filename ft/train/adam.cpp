// Adam (L2 weight decay) and AdamW (decoupled weight decay), as torch.optim.Adam
// and torch.optim.AdamW without amsgrad: bias-corrected moments, eps added outside
// the square root.
#include <cmath>

#include <mlx/ops.h>

#include "ft/train/optimizer_impl.h"

namespace ft::detail {

namespace {

class Adam : public Optimizer {
 public:
  Adam(const OptimizerConfig& c, bool decoupled)
      : Optimizer(decoupled ? "adamw" : "adam", c),
        beta1_(c.beta1.value_or(0.9f)),
        beta2_(c.beta2.value_or(0.999f)),
        weight_decay_(c.weight_decay.value_or(decoupled ? 0.01f : 0.0f)),
        decoupled_(decoupled) {
    // PyTorch rounds these Python doubles to f32 when it applies them.
    const float w1 = static_cast<float>(1.0 - static_cast<double>(beta1_));
    const float b2 = beta2_;
    const float w2 = static_cast<float>(1.0 - static_cast<double>(beta2_));
    const float eps = c.eps;
    const float l2 = decoupled ? 0.0f : weight_decay_;
    // inputs: param, grad, exp_avg, exp_avg_sq, step_size, bias_correction2_sqrt, decay
    rule_ = compile_rule(
        [w1, b2, w2, eps, l2](const std::vector<mx::array>& in) -> std::vector<mx::array> {
          mx::array p = in[0] * in[6];  // decay is 1 - lr * weight_decay for AdamW, else 1
          mx::array g = in[1];
          if (l2 != 0.0f) g = g + mx::array(l2) * in[0];
          const mx::array& m0 = in[2];
          // torch.lerp's two forms, picked by the weight, for the same rounding.
          mx::array m =
              w1 < 0.5f ? m0 + mx::array(w1) * (g - m0) : g - (g - m0) * mx::array(1.0f - w1);
          mx::array v = in[3] * mx::array(b2) + (mx::array(w2) * g) * g;
          mx::array denom = mx::sqrt(v) / in[5] + mx::array(eps);
          return {p + (-in[4] * m) / denom, m, v};
        },
        /*shapeless=*/true);
  }

 protected:
  std::vector<Slot> slots(const mx::Shape& shape) const override {
    return {{"exp_avg", shape}, {"exp_avg_sq", shape}};
  }
  std::vector<std::string> slot_names() const override { return {"exp_avg", "exp_avg_sq"}; }

  std::vector<mx::array> step_scalars(int64_t step, double lr) const override {
    const double t = static_cast<double>(step);
    const double bias_correction1 = 1.0 - std::pow(static_cast<double>(beta1_), t);
    const double bias_correction2 = 1.0 - std::pow(static_cast<double>(beta2_), t);
    const double decay = decoupled_ ? 1.0 - lr * static_cast<double>(weight_decay_) : 1.0;
    return f32_scalars({lr / bias_correction1, std::sqrt(bias_correction2), decay});
  }

  std::vector<mx::array> apply(const mx::array& p, const mx::array& g,
                               const std::vector<mx::array>& slots,
                               const std::vector<mx::array>& scalars,
                               const mx::array& grad_factor) override {
    return rule_({p, g, slots[0], slots[1], scalars[0], scalars[1], scalars[2], grad_factor});
  }

 private:
  float beta1_;
  float beta2_;
  float weight_decay_;
  bool decoupled_;
  Rule rule_;
};

}  // namespace

std::unique_ptr<Optimizer> make_adam(const OptimizerConfig& config, bool decoupled) {
  return std::make_unique<Adam>(config, decoupled);
}

}  // namespace ft::detail
