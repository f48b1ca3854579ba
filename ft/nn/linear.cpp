#include "ft/nn/linear.h"

#include <mlx/ops.h>
#include <mlx/random.h>

#include "ft/nn/init.h"

namespace ft::nn {

Linear::Linear(int in_features, int out_features, bool bias, const mx::array& key, mx::Dtype dtype,
               bool transposed)
    : weight_(mx::array(0.0f)), transposed_(transposed) {
  FT_CHECK(in_features > 0 && out_features > 0, "linear", "features must be positive, got (",
           in_features, ", ", out_features, ")");
  auto keys = mx::random::split(key);
  weight_ = init::uniform_fan_in({out_features, in_features}, in_features, keys.first, dtype);
  if (transposed_) weight_ = mx::transpose(weight_);
  if (bias) bias_ = init::uniform_fan_in({out_features}, in_features, keys.second, dtype);
  register_all();
}

Linear::Linear(mx::array weight, std::optional<mx::array> bias, bool transposed)
    : weight_(std::move(weight)), bias_(std::move(bias)), transposed_(transposed) {
  FT_CHECK(weight_.ndim() == 2, "linear", "weight must be 2-D, got ", weight_.ndim(), "-D");
  FT_CHECK(!bias_ || (bias_->ndim() == 1 && bias_->shape(0) == out_features()), "linear",
           "bias must have shape (", out_features(), ",)");
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

mx::array Linear::weight_out_in() const {
  return transposed_ ? mx::transpose(weight_) : weight_;
}

mx::array Linear::operator()(const mx::array& x) {
  check_input(x);
  mx::array w_in_out = transposed_ ? weight_ : mx::transpose(weight_);
  if (bias_) return mx::addmm(*bias_, x, w_in_out);
  return mx::matmul(x, w_in_out);
}

}  // namespace ft::nn
