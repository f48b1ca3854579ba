// Normalisation layers on MLX's fused kernels (mx::fast::rms_norm / layer_norm).
#pragma once

#include <optional>

#include "ft/nn/module.h"

namespace ft::nn {

// y = x / sqrt(mean(x^2, -1) + eps) * weight. Parameter "weight" (dims,), ones. With
// unit_offset the scale is 1 + weight and weight starts at zeros (Gemma's RMSNorm).
class RMSNorm : public Layer {
 public:
  explicit RMSNorm(int dims, float eps = 1e-5f, mx::Dtype dtype = mx::float32,
                   bool unit_offset = false);

  std::string type_name() const override { return "RMSNorm"; }
  mx::array operator()(const mx::array& x) override;

  int dims() const { return weight_.shape(0); }
  float eps() const { return eps_; }
  bool unit_offset() const { return unit_offset_; }
  const mx::array& weight() const { return weight_; }

 private:
  float eps_;
  bool unit_offset_;
  mx::array weight_;  // (dims,)
};

// y = (x - mean) / sqrt(var + eps) * weight + bias over the last axis. With affine,
// "weight" (dims,) starts at ones and, with bias, "bias" (dims,) at zeros; without
// affine the layer has no parameters (and bias is ignored).
class LayerNorm : public Layer {
 public:
  explicit LayerNorm(int dims, float eps = 1e-5f, bool affine = true, bool bias = true,
                     mx::Dtype dtype = mx::float32);

  std::string type_name() const override { return "LayerNorm"; }
  mx::array operator()(const mx::array& x) override;

  int dims() const { return dims_; }
  float eps() const { return eps_; }
  const std::optional<mx::array>& weight() const { return weight_; }
  const std::optional<mx::array>& bias() const { return bias_; }

 private:
  int dims_;
  float eps_;
  std::optional<mx::array> weight_;  // (dims,)
  std::optional<mx::array> bias_;    // (dims,)
};

}  // namespace ft::nn
