#include "ft/nn/norm.h"

#include <mlx/fast.h>
#include <mlx/ops.h>

namespace ft::nn {
namespace {

void check_norm_args(const char* place, int dims, float eps) {
  FT_CHECK(dims > 0, place, "dims must be positive, got ", dims);
  FT_CHECK(eps > 0.0f, place, "eps must be positive, got ", eps);
}

void check_input(const char* place, const mx::array& x, int dims) {
  FT_CHECK(x.ndim() >= 1 && x.shape(-1) == dims, place, "input's last dimension is ",
           x.ndim() ? x.shape(-1) : 0, ", expected ", dims);
}

}  // namespace

RMSNorm::RMSNorm(int dims, float eps, mx::Dtype dtype, bool unit_offset)
    : eps_(eps), unit_offset_(unit_offset), weight_(mx::array(0.0f)) {
  check_norm_args("rms_norm", dims, eps);
  weight_ = unit_offset ? mx::zeros({dims}, dtype) : mx::ones({dims}, dtype);
  register_parameter("weight", &weight_);
}

mx::array RMSNorm::operator()(const mx::array& x) {
  check_input("rms_norm", x, dims());
  if (!unit_offset_) return mx::fast::rms_norm(x, weight_, eps_);
  // Gemma adds the one in float32 before scaling.
  mx::array scale = mx::astype(mx::astype(weight_, mx::float32) + 1.0f, x.dtype());
  return mx::fast::rms_norm(x, scale, eps_);
}

LayerNorm::LayerNorm(int dims, float eps, bool affine, bool bias, mx::Dtype dtype)
    : dims_(dims), eps_(eps) {
  check_norm_args("layer_norm", dims, eps);
  if (affine) {
    weight_ = mx::ones({dims}, dtype);
    register_parameter("weight", &*weight_);
    if (bias) {
      bias_ = mx::zeros({dims}, dtype);
      register_parameter("bias", &*bias_);
    }
  }
}

mx::array LayerNorm::operator()(const mx::array& x) {
  check_input("layer_norm", x, dims_);
  return mx::fast::layer_norm(x, weight_, bias_, eps_);
}

}  // namespace ft::nn
