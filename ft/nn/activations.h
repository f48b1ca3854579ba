// Elementwise activations, and the lookup by the names Hugging Face configs use
// ("hidden_act": "silu").
#pragma once

#include <functional>
#include <string>

#include <mlx/array.h>

namespace ft::nn {

namespace mx = mlx::core;

using Activation = std::function<mx::array(const mx::array&)>;

mx::array silu(const mx::array& x);  // x * sigmoid(x)
mx::array gelu(const mx::array& x);  // exact: x/2 * (1 + erf(x / sqrt(2)))
// tanh approximation: x/2 * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3)))
mx::array gelu_tanh(const mx::array& x);
mx::array quick_gelu(const mx::array& x);  // x * sigmoid(1.702 x)
mx::array relu(const mx::array& x);

// "silu" / "swish", "gelu", "gelu_pytorch_tanh" / "gelu_new" / "gelu_fast" /
// "gelu_tanh", "quick_gelu", "relu", "sigmoid", "tanh". Unknown names are an ft::Error
// that lists the known ones.
Activation activation_by_name(const std::string& name);

}  // namespace ft::nn
