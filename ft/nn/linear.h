// Linear: y = x W^T + b, with W stored (out_features, in_features) as in PyTorch, or
// (in_features, out_features) when transposed: GPT-2's Conv1D layers keep their weights
// that way, and the checkpoint's name and shape stay as they are.
#pragma once

#include <optional>

#include "ft/nn/module.h"

namespace ft::nn {

class Linear : public Layer {
 public:
  // Weights drawn U(-1/sqrt(in), 1/sqrt(in)) from key, as PyTorch does.
  Linear(int in_features, int out_features, bool bias, const mx::array& key,
         mx::Dtype dtype = mx::float32, bool transposed = false);
  // Wraps given arrays: weight (out, in), or (in, out) when transposed; bias (out,).
  explicit Linear(mx::array weight, std::optional<mx::array> bias = std::nullopt,
                  bool transposed = false);

  std::string type_name() const override { return "Linear"; }
  mx::array operator()(const mx::array& x) override;
  // ft::Error unless x's last dimension is in_features().
  void check_input(const mx::array& x) const;

  int in_features() const { return weight_.shape(transposed_ ? 0 : 1); }
  int out_features() const { return weight_.shape(transposed_ ? 1 : 0); }
  bool transposed() const { return transposed_; }
  // The parameter as stored: (out, in), or (in, out) when transposed.
  const mx::array& weight() const { return weight_; }
  // W as (out, in) whatever the storage (a transposed view when transposed).
  mx::array weight_out_in() const;
  const std::optional<mx::array>& bias() const { return bias_; }

 private:
  void register_all();
  mx::array weight_;               // (out_features, in_features), or its transpose
  std::optional<mx::array> bias_;  // (out_features,)
  bool transposed_ = false;
};

}  // namespace ft::nn
