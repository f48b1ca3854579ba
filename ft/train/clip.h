// Gradient clipping by the global L2 norm.
#pragma once

#include <mlx/array.h>  // defines: mlx::core::array

#include "ft/core/param_map.h"

namespace ft {

struct ClippedGrads {
  ParamMap grads;  // the gradients, scaled down when their norm exceeded max_norm
  mx::array norm;  // () f32: the global norm before clipping
};

// PyTorch's clip_grad_norm_ (norm_type 2): the norm is taken over all gradients as
// one vector, computed in f32 whatever the gradients' dtype; every gradient is
// multiplied by min(1, max_norm / (norm + 1e-6)) and keeps its dtype. Lazy: nothing
// is evaluated. max_norm must be positive (ft::Error otherwise).
ClippedGrads clip_grad_norm(const ParamMap& grads, float max_norm);

// min(1, max_norm / (norm + 1e-6)): what clip_grad_norm multiplies the gradients by, for
// a caller that applies it elsewhere (the optimizer's grad_factor). Lazy.
mx::array clip_coefficient(const mx::array& norm, float max_norm);

// The global L2 norm of all gradients, in f32, lazy.
mx::array global_norm(const ParamMap& grads);

}  // namespace ft
