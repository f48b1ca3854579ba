// Parameter initialisers. Each draws from an explicit key so runs are reproducible.
#pragma once

#include <mlx/array.h>
#include <mlx/dtype.h>

namespace ft::nn::init {

namespace mx = mlx::core;

// U(-bound, bound) with bound = 1/sqrt(fan_in): PyTorch's default for Linear.
mx::array uniform_fan_in(const mx::Shape& shape, int fan_in, const mx::array& key,
                         mx::Dtype dtype = mx::float32);
// N(0, std^2).
mx::array normal(const mx::Shape& shape, float std, const mx::array& key,
                 mx::Dtype dtype = mx::float32);
// Glorot/Xavier uniform: U(-a, a), a = gain * sqrt(6 / (fan_in + fan_out)).
mx::array glorot_uniform(const mx::Shape& shape, int fan_in, int fan_out, const mx::array& key,
                         float gain = 1.0f, mx::Dtype dtype = mx::float32);
// Kaiming/He uniform for fan_in with the given negative slope `a` (PyTorch's
// kaiming_uniform_(a=sqrt(5)) is LoRA A's initialiser in PEFT).
mx::array kaiming_uniform(const mx::Shape& shape, int fan_in, float a, const mx::array& key,
                          mx::Dtype dtype = mx::float32);

}  // namespace ft::nn::init
