#include "ft/train/precision.h"

#include <cmath>

#include <mlx/ops.h>

#include "ft/core/error.h"

namespace ft {

mx::Dtype master_dtype(mx::Dtype param_dtype) {
  return param_dtype == mx::bfloat16 || param_dtype == mx::float16 ? mx::float32 : param_dtype;
}

mx::array all_finite(const ParamMap& arrays) {
  mx::array finite = mx::array(true);
  for (const auto& [name, value] : arrays)
    finite = mx::logical_and(finite, mx::all(mx::isfinite(value)));
  return finite;
}

LossScaler::LossScaler(LossScaleConfig config) : config_(config), scale_(config.initial_scale) {
  FT_CHECK(config_.initial_scale > 0 && std::isfinite(config_.initial_scale), "loss scale",
           "initial_scale must be positive and finite, got ", config_.initial_scale);
  FT_CHECK(config_.growth_interval > 0, "loss scale", "growth_interval must be positive, got ",
           config_.growth_interval);
}

void LossScaler::update(bool grads_finite) {
  if (!grads_finite) {
    scale_ *= 0.5f;
    good_steps_ = 0;
    FT_CHECK(scale_ >= std::ldexp(1.0f, -24), "loss scale",
             "the gradients overflowed at every loss scale down to 2^-24: the loss itself is "
             "not finite");
    return;
  }
  if (++good_steps_ >= config_.growth_interval) {
    scale_ *= 2.0f;
    good_steps_ = 0;
  }
}

void LossScaler::load(float scale, int64_t good_steps) {
  FT_CHECK(scale > 0 && std::isfinite(scale), "loss scale", "scale must be positive, got ", scale);
  FT_CHECK(good_steps >= 0, "loss scale", "good_steps must be >= 0, got ", good_steps);
  scale_ = scale;
  good_steps_ = good_steps;
}

}  // namespace ft
