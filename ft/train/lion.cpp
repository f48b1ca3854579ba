// Lion (Chen et al., "Symbolic Discovery of Optimization Algorithms", 2023): the
// sign of an interpolated momentum, with decoupled weight decay.
#include <mlx/ops.h>

#include "ft/train/optimizer_impl.h"

namespace ft::detail {

namespace {

class Lion : public Optimizer {
 public:
  explicit Lion(const OptimizerConfig& c)
      : Optimizer("lion", c),
        weight_decay_(c.weight_decay.value_or(0.0f)) {
    const double beta1 = c.beta1.value_or(0.9f), beta2 = c.beta2.value_or(0.99f);
    const float b1 = static_cast<float>(beta1), w1 = static_cast<float>(1.0 - beta1);
    const float b2 = static_cast<float>(beta2), w2 = static_cast<float>(1.0 - beta2);
    // inputs: param, grad, exp_avg, lr, decay
    rule_ = compile_rule(
        [b1, w1, b2, w2](const std::vector<mx::array>& in) -> std::vector<mx::array> {
          const mx::array& g = in[1];
          const mx::array& m = in[2];
          mx::array direction = mx::sign(m * mx::array(b1) + g * mx::array(w1));
          mx::array p = in[0] * in[4] - in[3] * direction;
          return {p, m * mx::array(b2) + g * mx::array(w2)};
        },
        /*shapeless=*/true);
  }

 protected:
  std::vector<Slot> slots(const mx::Shape& shape) const override { return {{"exp_avg", shape}}; }
  std::vector<std::string> slot_names() const override { return {"exp_avg"}; }

  std::vector<mx::array> step_scalars(int64_t, double lr) const override {
    return f32_scalars({lr, 1.0 - lr * static_cast<double>(weight_decay_)});
  }

  std::vector<mx::array> apply(const mx::array& p, const mx::array& g,
                               const std::vector<mx::array>& slots,
                               const std::vector<mx::array>& scalars,
                               const mx::array& grad_factor) override {
    return rule_({p, g, slots[0], scalars[0], scalars[1], grad_factor});
  }

 private:
  float weight_decay_;
  Rule rule_;
};

}  // namespace

std::unique_ptr<Optimizer> make_lion(const OptimizerConfig& config) {
  return std::make_unique<Lion>(config);
}

}  // namespace ft::detail
