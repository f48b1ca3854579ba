// LoRA and DoRA adapters around a Linear or a QuantizedLinear (QLoRA), LoRA on a mixture
// of experts' stacked weights (PEFT's target_parameters), and the helpers that put them
// into a model and merge them back.
//
// Note [LoRA parameter names]: a wrapper shows its base layer's own parameters under
// their original names ("weight", "bias", and "scales"/"biases" for a quantized base),
// so "model.layers.0.self_attn.q_proj.weight" keeps its Hugging Face name whether or
// not an adapter sits there. The adapter adds, with PEFT's shapes:
//   "lora_A"          (r, in)   PEFT's lora_A.<adapter>.weight
//   "lora_B"          (out, r)  PEFT's lora_B.<adapter>.weight
//   "lora_magnitude"  (out,)    DoRA only: PEFT's lora_magnitude_vector.<adapter>.weight
// The dropout on the adapter's input is a child "dropout" without parameters. The base
// parameters are frozen on construction; the adapter's are trainable.
//
// The slot a wrapper goes into must hold a std::shared_ptr<Layer> (or Module): a slot
// typed std::shared_ptr<Linear> refuses it (Module::replace_module's type check).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "ft/nn/dropout.h"
#include "ft/nn/linear.h"
#include "ft/nn/quantized_linear.h"

namespace ft::nn {

// y = base(x) + s * (dropout(x) A^T) B^T, with s = alpha / r, or alpha / sqrt(r) for
// rsLoRA. A starts as PEFT's kaiming_uniform(a = sqrt(5)) from key, B at zeros, so a
// fresh wrapper computes exactly what its base does.
class LoRALinear : public Layer {
 public:
  // base must be a Linear or a QuantizedLinear. rank > 0, alpha > 0, dropout in
  // [0, 1); otherwise ft::Error. The adapter arrays are made in dtype.
  LoRALinear(std::shared_ptr<Layer> base, int rank, float alpha, const mx::array& key,
             float dropout = 0.0f, bool rslora = false, mx::Dtype dtype = mx::float32);

  std::string type_name() const override { return "LoRALinear"; }
  mx::array operator()(const mx::array& x) override;

  // The merged layer: a Linear with W + s B A (in the base's dtype). For a quantized
  // base, a QuantizedLinear re-quantized with the base's group size and bits, or with
  // dequantize = true a Linear in the scales' dtype.
  std::shared_ptr<Layer> fuse(bool dequantize = false) const;

  int rank() const { return lora_A_.shape(0); }
  float scale() const { return scale_; }
  int in_features() const { return lora_A_.shape(1); }
  int out_features() const { return lora_B_.shape(0); }
  bool quantized() const { return quantized_ != nullptr; }
  const std::shared_ptr<Layer>& base() const { return base_; }
  Dropout& dropout() { return *dropout_; }
  const mx::array& lora_A() const { return lora_A_; }
  const mx::array& lora_B() const { return lora_B_; }

  // The base weight as floats, (out, in): dequantized for a quantized base.
  mx::array base_weight() const;
  // s B A, (out, in), in the adapter's dtype.
  mx::array delta_weight() const;
  // Names of the adapter's own parameters, in registration order.
  virtual std::vector<std::string> adapter_names() const { return {"lora_A", "lora_B"}; }

 protected:
  // The weight fuse() writes, (out, in), before the cast to the base's dtype.
  virtual mx::array merged_weight() const;
  // x W^T without the bias: quantized_matmul for a quantized base.
  mx::array base_product(const mx::array& x) const;
  const std::optional<mx::array>& base_bias() const;

  std::shared_ptr<Layer> base_;
  std::shared_ptr<Linear> linear_;              // base_ when it is a Linear
  std::shared_ptr<QuantizedLinear> quantized_;  // base_ when it is a QuantizedLinear
  std::shared_ptr<Dropout> dropout_;
  float scale_;
  mx::array lora_A_;  // (r, in)
  mx::array lora_B_;  // (out, r)
};

// DoRA (Liu et al. 2024), as PEFT computes it:
//   W' = m * (W + s B A) / ||W + s B A||_row,  the norm per output row taken over the
//   inputs and detached from the gradient (the paper's section 4.3; PEFT does the same),
// so with dropout active y = base(x) + (m/n - 1) * dropout(x) W^T + (m/n) s (dropout(x)
// A^T) B^T, and without it y = (m/n) (x W^T + s (x A^T) B^T) + bias. The magnitude m starts
// at the row norms of W (dequantized for a quantized base), so a fresh wrapper again
// equals its base.
class DoRALinear : public LoRALinear {
 public:
  DoRALinear(std::shared_ptr<Layer> base, int rank, float alpha, const mx::array& key,
             float dropout = 0.0f, bool rslora = false, mx::Dtype dtype = mx::float32);

  std::string type_name() const override { return "DoRALinear"; }
  mx::array operator()(const mx::array& x) override;

  const mx::array& lora_magnitude() const { return lora_magnitude_; }
  std::vector<std::string> adapter_names() const override {
    return {"lora_A", "lora_B", "lora_magnitude"};
  }

 protected:
  mx::array merged_weight() const override;

 private:
  // m / ||W + s B A||_row, (out,), with the norm detached.
  mx::array magnitude_scale() const;
  mx::array lora_magnitude_;  // (out,)
};

// Note [Adapters on stacked expert parameters]
// A mixture of experts keeps its experts' weights stacked in one parameter W (E, out, in)
// (MoE's experts.gate_up_proj and down_proj), which no Linear wraps. PEFT 0.21 adapts such
// a parameter through target_parameters with one pair of matrices for all experts:
//   lora_A (E*r, in)   rows expert-major: expert e owns rows [e*r, (e+1)*r)
//   lora_B (out, E*r)  columns rank-major: column k*E + e is rank k of expert e
// so expert e's delta is s B[:, e::E] A[e*r:(e+1)*r] with s = alpha / r (r per expert).
// An ExpertLoRA holds that pair; its host, an nn::ExpertWeights (nn/experts.h), registers
// one child slot per stacked parameter under the parameter's own name, so the adapter's
// tensors are
// "<...>.experts.gate_up_proj.lora_A" / ".lora_B", beside the frozen
// "<...>.experts.gate_up_proj". There is no dropout (PEFT refuses it there too: the
// input is shared by every expert's delta) and no DoRA.
class ExpertLoRA : public Module {
 public:
  // rank (per expert) > 0, alpha > 0; A from key as LoRALinear's, B zeros, in dtype.
  ExpertLoRA(int experts, int out_features, int in_features, int rank, float alpha,
             const mx::array& key, bool rslora = false, mx::Dtype dtype = mx::float32);

  std::string type_name() const override { return "ExpertLoRA"; }

  // The low-rank term of the experts in indices for each row of x: x (..., 1, in) with
  // indices broadcastable against x's batch shape, as mx::gather_mm takes them ->
  // (..., 1, out). Two gathered products, never a loop over experts; sorted as in
  // nn::gather_matmul_t.
  mx::array operator()(const mx::array& x, const mx::array& indices, bool sorted = false) const;
  // s B_e A_e for every expert: (E, out, in), in the adapter's dtype.
  mx::array delta_weight() const;

  int experts() const { return experts_; }
  int rank() const { return lora_A_.shape(0) / experts_; }
  float scale() const { return scale_; }
  int in_features() const { return lora_A_.shape(1); }
  int out_features() const { return lora_B_.shape(0); }
  const mx::array& lora_A() const { return lora_A_; }
  const mx::array& lora_B() const { return lora_B_; }
  std::vector<std::string> adapter_names() const { return {"lora_A", "lora_B"}; }

 private:
  int experts_;
  float scale_;
  mx::array lora_A_;  // (E*r, in)
  mx::array lora_B_;  // (out, E*r)
};

// The target_modules entry for every linear layer but the output projection.
inline constexpr const char* kAllLinear = "all-linear";

struct LoraConfig {
  int rank = 8;
  float alpha = 16.0f;
  float dropout = 0.0f;
  bool rslora = false;  // s = alpha / sqrt(r)
  bool dora = false;
  // A Linear or QuantizedLinear is adapted when the last component of its dotted path
  // is one of target_modules ({"q_proj", "v_proj"}) or target_regex (Perl syntax)
  // matches its whole path somewhere (ft::Regex::search). At least one of the two must be
  // given. A stacked parameter of an nn::ExpertWeights is matched the same way by its
  // name ("gate_up_proj", "down_proj") and its full path
  // ("model.layers.0.mlp.experts.gate_up_proj").
  // kAllLinear among target_modules adapts every Linear and QuantizedLinear but lm_head
  // (PEFT's "all-linear").
  std::vector<std::string> target_modules;
  std::string target_regex;
  // > 0: only modules under ".layers.<i>." for the last num_layers values of i.
  int num_layers = 0;
  uint64_t seed = 0;  // keys for A and the dropouts
  mx::Dtype dtype = mx::float32;
};

// Replaces every matching layer under root by a LoRALinear (DoRALinear with dora), puts
// an ExpertLoRA on every matching stacked parameter, freezes everything except the
// adapters' parameters, and returns the adapted paths (a parameter's path for an
// ExpertLoRA) in named_modules order. Throws ft::Error on a bad config, when nothing
// matches, for DoRA or dropout on a stacked parameter, or when a slot refuses the wrapper
// (then nothing is changed).
std::vector<std::string> apply_lora(Module& root, const LoraConfig& config);

// Replaces every LoRA/DoRA wrapper under root by its fuse(dequantize) layer, merges every
// ExpertLoRA into its stacked parameter (W_e + s B_e A_e, in W's dtype; a quantized one
// re-quantized with its own group size and bits, or left in floats with dequantize) and
// removes it, and returns their paths.
std::vector<std::string> fuse_lora(Module& root, bool dequantize = false);

}  // namespace ft::nn
