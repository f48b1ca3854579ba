#include "ft/nn/activations.h"

#include <cmath>
#include <utility>
#include <vector>

#include <mlx/ops.h>

#include "ft/core/error.h"

namespace ft::nn {

// Constants are made in x's dtype so a bf16 input stays bf16.
mx::array silu(const mx::array& x) {
  return mx::multiply(x, mx::sigmoid(x));
}

mx::array gelu(const mx::array& x) {
  auto inv_sqrt2 = mx::array(static_cast<float>(M_SQRT1_2), x.dtype());
  auto half = mx::array(0.5f, x.dtype());
  auto one = mx::array(1.0f, x.dtype());
  return mx::multiply(mx::multiply(half, x), mx::add(one, mx::erf(mx::multiply(x, inv_sqrt2))));
}

mx::array gelu_tanh(const mx::array& x) {
  auto c = mx::array(static_cast<float>(std::sqrt(2.0 / M_PI)), x.dtype());
  auto k = mx::array(0.044715f, x.dtype());
  auto half = mx::array(0.5f, x.dtype());
  auto one = mx::array(1.0f, x.dtype());
  auto inner = mx::multiply(c, mx::add(x, mx::multiply(k, mx::multiply(x, mx::square(x)))));
  return mx::multiply(mx::multiply(half, x), mx::add(one, mx::tanh(inner)));
}

mx::array quick_gelu(const mx::array& x) {
  return mx::multiply(x, mx::sigmoid(mx::multiply(mx::array(1.702f, x.dtype()), x)));
}

mx::array relu(const mx::array& x) {
  return mx::maximum(x, mx::array(0.0f, x.dtype()));
}

Activation activation_by_name(const std::string& name) {
  static const std::vector<std::pair<std::string, Activation>> table = {
      {"silu", silu},
      {"swish", silu},
      {"gelu", gelu},
      {"gelu_pytorch_tanh", gelu_tanh},
      {"gelu_new", gelu_tanh},
      {"gelu_fast", gelu_tanh},
      {"gelu_tanh", gelu_tanh},
      {"quick_gelu", quick_gelu},
      {"relu", relu},
      {"sigmoid", [](const mx::array& x) { return mx::sigmoid(x); }},
      {"tanh", [](const mx::array& x) { return mx::tanh(x); }},
  };
  std::string known;
  for (const auto& [key, fn] : table) {
    if (key == name) return fn;
    known += (known.empty() ? "" : ", ") + key;
  }
  throw Error("activation", "unknown activation '" + name + "' (known: " + known + ")");
}

}  // namespace ft::nn
