// Adafactor (Shazeer & Stern, 2018) following Hugging Face transformers'
// transformers.optimization.Adafactor step by step, so the same options give the
// same numbers: second moments factored into row and column means for parameters of
// two or more dimensions, the update clipped by its RMS, an optional first moment,
// a rate scaled by the parameter's RMS, and an optional relative step size.
#include <algorithm>
#include <cmath>

#include <mlx/ops.h>

#include "ft/train/optimizer_impl.h"

namespace ft::detail {

namespace {

// sqrt(sum(x^2)) / sqrt(numel), as transformers computes it.
mx::array rms(const mx::array& x) {
  return mx::sqrt(mx::sum(mx::square(x))) / mx::array(std::sqrt(static_cast<float>(x.size())));
}

struct AdafactorOptions {
  float eps_sq;
  float eps_scale;
  float clip_threshold;
  std::optional<float> beta1;
  float weight_decay;
  bool scale_parameter;
};

// inputs: param, grad, [exp_avg], then exp_avg_sq_row and exp_avg_sq_col (factored)
// or exp_avg_sq, then the scalars step_size, beta2t, 1 - beta2t. Outputs: param and
// the slots in the same order.
std::vector<mx::array> adafactor_rule(const AdafactorOptions& o, bool factored,
                                      const std::vector<mx::array>& in) {
  const mx::array& p = in[0];
  const mx::array& g = in[1];
  const size_t first_sq = o.beta1 ? 3 : 2;
  const size_t n_sq = factored ? 2 : 1;
  const mx::array& step_size = in[first_sq + n_sq];
  const mx::array& beta2t = in[first_sq + n_sq + 1];
  const mx::array& one_minus_beta2t = in[first_sq + n_sq + 2];

  mx::array lr =
      o.scale_parameter ? mx::maximum(mx::array(o.eps_scale), rms(p)) * step_size : step_size;
  mx::array sq = mx::square(g) + mx::array(o.eps_sq);
  std::vector<mx::array> new_sq;
  mx::array update = g;
  if (factored) {
    mx::array row = in[first_sq] * beta2t + mx::mean(sq, -1) * one_minus_beta2t;      // (..., rows)
    mx::array col = in[first_sq + 1] * beta2t + mx::mean(sq, -2) * one_minus_beta2t;  // (..., cols)
    mx::array row_factor = mx::expand_dims(mx::rsqrt(row / mx::mean(row, -1, true)), -1);
    mx::array col_factor = mx::expand_dims(mx::rsqrt(col), -2);
    update = (row_factor * col_factor) * g;
    new_sq = {row, col};
  } else {
    mx::array v = in[first_sq] * beta2t + sq * one_minus_beta2t;
    update = mx::rsqrt(v) * g;
    new_sq = {v};
  }
  update = update / mx::maximum(rms(update) / mx::array(o.clip_threshold), mx::array(1.0f));
  update = update * lr;

  std::vector<mx::array> out;
  if (o.beta1) {
    const float b1 = *o.beta1;
    const float w1 = static_cast<float>(1.0 - static_cast<double>(b1));
    update = in[2] * mx::array(b1) + update * mx::array(w1);
    out.push_back(update);
  }
  mx::array new_p = p;
  if (o.weight_decay != 0.0f) new_p = new_p + new_p * (mx::array(-o.weight_decay) * lr);
  new_p = new_p - update;
  out.insert(out.begin(), new_p);
  out.insert(out.end(), new_sq.begin(), new_sq.end());
  return out;
}

class Adafactor : public Optimizer {
 public:
  explicit Adafactor(const OptimizerConfig& c)
      : Optimizer("adafactor", c),
        options_{
            c.eps_sq,         c.eps_scale, c.clip_threshold, c.beta1, c.weight_decay.value_or(0.0f),
            c.scale_parameter},
        decay_rate_(c.decay_rate),
        relative_step_(c.relative_step),
        warmup_init_(c.warmup_init) {
    // Not shapeless: mean and rms divide by element counts fixed when traced.
    const AdafactorOptions o = options_;
    factored_rule_ = compile_rule(
        [o](const std::vector<mx::array>& in) { return adafactor_rule(o, true, in); }, false);
    plain_rule_ = compile_rule(
        [o](const std::vector<mx::array>& in) { return adafactor_rule(o, false, in); }, false);
  }

 protected:
  std::vector<Slot> slots(const mx::Shape& shape) const override {
    std::vector<Slot> out;
    if (options_.beta1) out.push_back({"exp_avg", shape});
    if (shape.size() >= 2) {
      mx::Shape row(shape.begin(), shape.end() - 1);
      mx::Shape col(shape.begin(), shape.end() - 2);
      col.push_back(shape.back());
      out.push_back({"exp_avg_sq_row", row});
      out.push_back({"exp_avg_sq_col", col});
    } else {
      out.push_back({"exp_avg_sq", shape});
    }
    return out;
  }
  std::vector<std::string> slot_names() const override {
    return {"exp_avg", "exp_avg_sq", "exp_avg_sq_row", "exp_avg_sq_col"};
  }

  double rate(int64_t step) const override {
    if (!relative_step_) return Optimizer::rate(step);
    const double t = static_cast<double>(step);
    const double min_step = warmup_init_ ? 1e-6 * t : 1e-2;
    return std::min(min_step, 1.0 / std::sqrt(t));
  }

  std::vector<mx::array> step_scalars(int64_t step, double lr) const override {
    const double beta2t =
        1.0 - std::pow(static_cast<double>(step), static_cast<double>(decay_rate_));
    return f32_scalars({lr, beta2t, 1.0 - beta2t});
  }

  std::vector<mx::array> apply(const mx::array& p, const mx::array& g,
                               const std::vector<mx::array>& slots,
                               const std::vector<mx::array>& scalars,
                               const mx::array& grad_factor) override {
    std::vector<mx::array> in{p, g};
    in.insert(in.end(), slots.begin(), slots.end());
    in.insert(in.end(), scalars.begin(), scalars.end());
    in.push_back(grad_factor);
    return p.ndim() >= 2 ? factored_rule_(in) : plain_rule_(in);
  }

 private:
  AdafactorOptions options_;
  float decay_rate_;
  bool relative_step_;
  bool warmup_init_;
  Rule factored_rule_;
  Rule plain_rule_;
};

}  // namespace

std::unique_ptr<Optimizer> make_adafactor(const OptimizerConfig& config) {
  return std::make_unique<Adafactor>(config);
}

}  // namespace ft::detail
