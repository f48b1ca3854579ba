// Rotary position embeddings with every scaling the families use (linear, dynamic NTK,
// llama3, longrope) and partial rotation (the first rotary_dims of each head, in
// GPT-NeoX's halves, as Hugging Face's rotate_half), on mx::fast::rope.
#pragma once

#include <optional>

#include <mlx/array.h>

#include "ft/models/config.h"

namespace ft::models {

namespace mx = mlx::core;

// longrope's scale of the cosines and sines: rope_scaling's attention_factor, else Hugging
// Face's default from the context's growth over the original one,
// sqrt(1 + log(factor) / log(original)) (1 when it does not grow).
float longrope_attention_factor(const Config& config);

class Rope {
 public:
  // base: the rotation base (config.rope_theta, or rope_local_theta on Gemma 3's sliding
  // layers, which use no scaling: scaled = false).
  Rope(const Config& config, float base, bool scaled = true);

  // x (batch, heads, length, head_dim) at positions offset .. offset + length - 1 -> same.
  //
  // Dynamic NTK and longrope, as Hugging Face computes them, pick their frequencies from
  // the largest position of the forward pass (offset + length): with a cache, keys
  // already stored keep the rotation they were given.
  mx::array operator()(const mx::array& x, int offset) const;

 private:
  int head_dim_, dims_;
  float base_;
  RopeScaling scaling_;
  int max_position_embeddings_;
  std::optional<mx::array> periods_;       // (dims / 2,) llama3 or longrope's short factors
  std::optional<mx::array> long_periods_;  // (dims / 2,) longrope's long factors
  float attention_factor_ = 1.0f;          // longrope's scale of cos and sin
};

}  // namespace ft::models
