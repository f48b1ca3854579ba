#include "ft/train/clip.h"

#include <cmath>

#include <mlx/ops.h>  // defines: sum, square, sqrt, minimum, astype

#include "ft/core/error.h"

namespace ft {

mx::array global_norm(const ParamMap& grads) {
  mx::array total = mx::array(0.0f);
  for (const auto& [name, g] : grads)
    total = total + mx::sum(mx::square(mx::astype(g, mx::float32)));
  return mx::sqrt(total);
}

mx::array clip_coefficient(const mx::array& norm, float max_norm) {
  FT_CHECK(std::isfinite(max_norm) && max_norm > 0.0f, "clip_grad_norm",
           "max_norm must be positive, got ", max_norm);
  // The 1e-6 keeps the division finite for an all-zero gradient, as PyTorch does.
  return mx::minimum(mx::array(max_norm) / (norm + mx::array(1e-6f)), mx::array(1.0f));
}

ClippedGrads clip_grad_norm(const ParamMap& grads, float max_norm) {
  mx::array norm = global_norm(grads);
  mx::array scale = clip_coefficient(norm, max_norm);
  ClippedGrads out{ParamMap(), norm};
  // Scaling in f32 and rounding once matches PyTorch for bf16 gradients.
  for (const auto& [name, g] : grads) {
    if (g.dtype() == mx::float32)
      out.grads.set(name, g * scale);
    else
      out.grads.set(name, mx::astype(mx::astype(g, mx::float32) * scale, g.dtype()));
  }
  return out;
}

}  // namespace ft
