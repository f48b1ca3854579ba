// SGD with momentum, dampening, Nesterov and L2 weight decay, as torch.optim.SGD.
#include <mlx/ops.h>

#include "ft/train/optimizer_impl.h"

namespace ft::detail {

namespace {

class Sgd : public Optimizer {
 public:
  explicit Sgd(const OptimizerConfig& c)
      : Optimizer("sgd", c),
        momentum_(c.momentum),
        dampening_(c.dampening),
        weight_decay_(c.weight_decay.value_or(0.0f)) {
    const float wd = weight_decay_, mu = momentum_;
    const bool nesterov = c.nesterov;
    // inputs: param, grad, [buf], lr, buf_scale, grad_scale
    rule_ = compile_rule(
        [wd, mu, nesterov](const std::vector<mx::array>& in) -> std::vector<mx::array> {
          const mx::array& p = in[0];
          mx::array g = in[1];
          if (wd != 0.0f) g = g + mx::array(wd) * p;
          if (mu == 0.0f) return {p - in[2] * g};
          // The first update copies the gradient into the buffer: the host passes
          // buf_scale 0 and grad_scale 1 then, 1 - dampening afterwards.
          mx::array buf = in[2] * in[4] + g * in[5];
          g = nesterov ? g + mx::array(mu) * buf : buf;
          return {p - in[3] * g, buf};
        },
        /*shapeless=*/true);
  }

 protected:
  std::vector<Slot> slots(const mx::Shape& shape) const override {
    if (momentum_ == 0.0f) return {};
    return {{"momentum_buffer", shape}};
  }
  std::vector<std::string> slot_names() const override { return {"momentum_buffer"}; }

  std::vector<mx::array> step_scalars(int64_t step, double lr) const override {
    const bool first = step == 1;
    return f32_scalars({lr, first ? 0.0 : static_cast<double>(momentum_),
                        first ? 1.0 : 1.0 - static_cast<double>(dampening_)});
  }

  std::vector<mx::array> apply(const mx::array& p, const mx::array& g,
                               const std::vector<mx::array>& slots,
                               const std::vector<mx::array>& scalars,
                               const mx::array& grad_factor) override {
    std::vector<mx::array> in{p, g};
    if (momentum_ == 0.0f) {
      in.push_back(scalars[0]);
    } else {
      in.push_back(slots[0]);
      in.insert(in.end(), scalars.begin(), scalars.end());
    }
    in.push_back(grad_factor);
    return rule_(in);
  }

 private:
  float momentum_;
  float dampening_;
  float weight_decay_;
  Rule rule_;
};

}  // namespace

std::unique_ptr<Optimizer> make_sgd(const OptimizerConfig& config) {
  return std::make_unique<Sgd>(config);
}

}  // namespace ft::detail
