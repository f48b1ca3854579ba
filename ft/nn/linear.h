// Linear: y = x W^T + b, with W stored (out_features, in_features) as in PyTorch.
#pragma once

#include <optional>

#include "ft/nn/module.h"

namespace ft::nn {

class Linear : public Layer {
 public:
  // Weights drawn U(-1/sqrt(in), 1/sqrt(in)) from key, as PyTorch does.
  Linear(int in_features, int out_features, bool bias, const mx::array& key,
         mx::Dtype dtype = mx::float32);
  // Wraps given arrays: weight (out, in), bias (out,).
  explicit Linear(mx::array weight, std::optional<mx::array> bias = std::nullopt);

  std::string type_name() const override { return "Linear"; }
  mx::array operator()(const mx::array& x) override;
  // ft::Error unless x's last dimension is in_features().
  void check_input(const mx::array& x) const;

  int in_features() const { return weight_.shape(1); }
  int out_features() const { return weight_.shape(0); }
  const mx::array& weight() const { return weight_; }
  const std::optional<mx::array>& bias() const { return bias_; }

 private:
  void register_all();
  mx::array weight_;               // (out_features, in_features)
  std::optional<mx::array> bias_;  // (out_features,)
};

}  // namespace ft::nn
