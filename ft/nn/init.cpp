#include "ft/nn/init.h"

#include <cmath>

#include <mlx/ops.h>
#include <mlx/random.h>

#include "ft/core/error.h"

namespace ft::nn::init {
namespace {

mx::array symmetric_uniform(const mx::Shape& shape, float bound, const mx::array& key,
                            mx::Dtype dtype) {
  return mx::random::uniform(mx::array(-bound), mx::array(bound), shape, dtype, key);
}

}  // namespace

mx::array uniform_fan_in(const mx::Shape& shape, int fan_in, const mx::array& key,
                         mx::Dtype dtype) {
  FT_CHECK(fan_in > 0, "init", "fan_in must be positive, got ", fan_in);
  return symmetric_uniform(shape, 1.0f / std::sqrt(static_cast<float>(fan_in)), key, dtype);
}

mx::array normal(const mx::Shape& shape, float std, const mx::array& key, mx::Dtype dtype) {
  return mx::random::normal(shape, dtype, 0.0f, std, key);
}

mx::array glorot_uniform(const mx::Shape& shape, int fan_in, int fan_out, const mx::array& key,
                         float gain, mx::Dtype dtype) {
  FT_CHECK(fan_in > 0 && fan_out > 0, "init", "fans must be positive");
  float bound = gain * std::sqrt(6.0f / static_cast<float>(fan_in + fan_out));
  return symmetric_uniform(shape, bound, key, dtype);
}

mx::array kaiming_uniform(const mx::Shape& shape, int fan_in, float a, const mx::array& key,
                          mx::Dtype dtype) {
  FT_CHECK(fan_in > 0, "init", "fan_in must be positive, got ", fan_in);
  float gain = std::sqrt(2.0f / (1.0f + a * a));
  float bound = gain * std::sqrt(3.0f / static_cast<float>(fan_in));
  return symmetric_uniform(shape, bound, key, dtype);
}

}  // namespace ft::nn::init
