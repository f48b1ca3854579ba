// Mixed-precision training: the compute dtypes a model may run in, f32 master copies of
// low-precision trainable parameters, and dynamic loss scaling for float16.
//
// TrainStep (step.h) uses these: every trainable parameter held in bfloat16 or float16
// gets an f32 master that the optimizer updates; the model computes with the master cast
// to the parameter's own dtype (Note [Master weights] in step.cpp). With float16 a
// LossScaler multiplies the loss before differentiation so small gradients survive the
// narrow exponent, and skips the update of a step whose gradients overflowed.
#pragma once

#include <cstdint>
#include <string>

#include <mlx/array.h>

#include "ft/core/param_map.h"

namespace ft {

namespace mx = mlx::core;

// The dtype an optimizer's master copy of a parameter of this dtype has: float32 for
// bfloat16 and float16, the dtype itself otherwise (float32, float64).
mx::Dtype master_dtype(mx::Dtype param_dtype);

// A () bool array: true when every element of every array is finite. Lazy.
mx::array all_finite(const ParamMap& arrays);

struct LossScaleConfig {
  float initial_scale = 32768.0f;  // 2^15; a power of two keeps scaling exact
  int64_t growth_interval = 2000;  // finite steps in a row before the scale doubles
};

// Dynamic loss scaling: the loss is multiplied by scale() before differentiation and the
// gradients divided by it in f32. A step whose gradients hold an inf or a NaN is skipped
// and the scale halved; after growth_interval finite steps in a row it doubles.
class LossScaler {
 public:
  // initial_scale > 0 and growth_interval > 0; otherwise ft::Error.
  explicit LossScaler(LossScaleConfig config = {});

  float scale() const { return scale_; }
  // Finite steps since the last change of the scale.
  int64_t good_steps() const { return good_steps_; }
  const LossScaleConfig& config() const { return config_; }

  // Records a step's outcome and adjusts the scale. Throws ft::Error when halving takes
  // the scale below 2^-24: gradients that overflow at every scale mean a NaN or inf in
  // the loss itself, which skipping steps cannot cure.
  void update(bool grads_finite);
  // Restores a saved state (a checkpoint's); scale > 0, good_steps >= 0.
  void load(float scale, int64_t good_steps);

 private:
  LossScaleConfig config_;
  float scale_;
  int64_t good_steps_ = 0;
};

}  // namespace ft
