#include "ft/nn/linear.h"

#include <mlx/ops.h>
#include <mlx/random.h>

#include "ft/nn/init.h"

namespace ft::nn {

Linear::Linear(int in_features, int out_features, bool bias, const mx::array& key, mx::Dtype dtype)
    : weight_(mx::array(0.0f)) {
  FT_CHECK(in_features > 0 && out_features > 0, "linear", "features must be positive, got (",
           in_features, ", ", out_features, ")");
  auto keys = mx::random::split(key);
  weight_ = init::uniform_fan_in({out_features, in_features}, in_features, keys.first, dtype);
  if (bias) bias_ = init::uniform_fan_in({out_features}, in_features, keys.second, dtype);
  register_all();
}

Linear::Linear(mx::array weight, std::optional<mx::array> bias)
    : weight_(std::move(weight)), bias_(std::move(bias)) {
  FT_CHECK(weight_.ndim() == 2, "linear", "weight must be 2-D, got ", weight_.ndim(), "-D");
  FT_CHECK(!bias_ || (bias_->ndim() == 1 && bias_->shape(0) == weight_.shape(0)), "linear",
           "bias must have shape (", weight_.shape(0), ",)");
  register_all();
}

void Linear::register_all() {
  register_parameter("weight", &weight_);
  if (bias_) register_parameter("bias", &*bias_);
}

void Linear::check_input(const mx::array& x) const {
  FT_CHECK(x.ndim() >= 1 && x.shape(-1) == in_features(), "linear", "input's last dimension is ",
           x.ndim() ? x.shape(-1) : 0, ", expected ", in_features());
}

mx::array Linear::operator()(const mx::array& x) {
  check_input(x);
  if (bias_) return mx::addmm(*bias_, x, mx::transpose(weight_));
  return mx::matmul(x, mx::transpose(weight_));
}

}  // namespace ft::nn
