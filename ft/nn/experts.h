// Stacked expert weights: a mixture of experts keeps each projection's per-expert
// matrices in one (E, out, in) tensor, which no Linear wraps. StackedWeight holds one
// such tensor, in floats or in MLX's affine group-wise quantized form (the frozen base
// of QLoRA), with the gathered product that runs each row through its own expert
// without a loop over experts. ExpertWeights is the module that holds them by name;
// each can be quantized and carry an ExpertLoRA (nn/lora.h).
//
// Parameter names: "<name>" (the floats, or the packed uint32 words) and, when
// quantized, "<name>_scales" and "<name>_biases", the suffixes Hugging Face checkpoints
// give a quantized stacked parameter's companions (gpt-oss's "gate_up_proj_scales").
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <mlx/array.h>

#include "ft/nn/lora.h"  // defines: ExpertLoRA
#include "ft/nn/module.h"

namespace ft::nn {

namespace mx = mlx::core;

// x (..., 1, in) times the transpose of w's matrix (E, out, in) picked by indices for each
// row (indices broadcast against x's batch shape) -> (..., 1, out). sorted: indices are
// ascending (each expert's rows contiguous), the grouped form of the product. On the CPU,
// where MLX gathers in float32 only, other dtypes go through float32 and come back.
mx::array gather_matmul_t(const mx::array& x, const mx::array& w, const mx::array& indices,
                          bool sorted = false);

struct StackedWeight {
  mx::array weight = mx::array(0.0f);       // (E, out, in), or (E, out, in * bits / 32) uint32
  std::optional<mx::array> scales, biases;  // (E, out, in / group_size) when quantized
  int group_size = 0;
  int bits = 0;  // 0: floats

  // Floats, as they are; checks a 3-D floating-point array.
  static StackedWeight floats(mx::array weight);
  // w (E, out, in) quantized over in; scales and biases in w's dtype. Throws ft::Error
  // when group_size does not divide in or bits is not one MLX's affine mode packs.
  static StackedWeight quantized(const mx::array& w, int group_size, int bits);
  // Zero-filled quantized arrays of the right shapes, to be filled by a load.
  static StackedWeight zeros_quantized(int experts, int out, int in, int group_size, int bits,
                                       mx::Dtype dtype);

  bool is_quantized() const { return bits > 0; }
  int experts() const { return weight.shape(0); }
  int out_features() const { return weight.shape(1); }
  int in_features() const { return is_quantized() ? weight.shape(2) * 32 / bits : weight.shape(2); }
  // The float compute dtype: the weight's, or the scales' when quantized.
  mx::Dtype dtype() const { return is_quantized() ? scales->dtype() : weight.dtype(); }
  // The matrices as floats (E, out, in), in dtype().
  mx::array dequantized() const;
  // x (..., 1, in) through each row's expert in indices, as gather_matmul_t; quantized
  // weights multiply through mx::gather_qmm without being dequantized.
  mx::array project(const mx::array& x, const mx::array& indices, bool sorted = false) const;
};

// A module of named stacked weights. Each has a child slot of its own name for its
// adapter, null until apply_lora fills it, so the adapter's tensors are
// "<...>.experts.gate_up_proj.lora_A" / ".lora_B" beside the frozen
// "<...>.experts.gate_up_proj" (Note [Adapters on stacked expert parameters]).
class ExpertWeights : public Module {
 public:
  // In registration order (PEFT nests its wrappers in this order, the first innermost:
  // see ft/io/adapters.h).
  std::vector<std::string> stacked_names() const;
  const StackedWeight& stacked(const std::string& name) const;
  // Replaces a stacked weight, floats or quantized, registering its arrays anew: a
  // quantized one's arrays are frozen, floats keep the name's frozen state. Its adapter
  // stays. Throws ft::Error for an unknown name or a weight of another (E, out, in).
  void set_stacked(const std::string& name, StackedWeight weight);
  std::shared_ptr<ExpertLoRA>& adapter(const std::string& name);
  const std::shared_ptr<ExpertLoRA>& adapter(const std::string& name) const;
  // x (..., 1, in) through name's experts in indices, plus its adapter's term.
  mx::array project(const std::string& name, const mx::array& x, const mx::array& indices,
                    bool sorted = false) const;

 protected:
  // Registers a stacked weight and its adapter slot; for the subclass's constructor.
  void add_stacked(const std::string& name, StackedWeight weight);

 private:
  struct Entry {
    std::string name;
    StackedWeight weight;
    std::shared_ptr<ExpertLoRA> adapter;
  };
  Entry& entry(const std::string& name);
  const Entry& entry(const std::string& name) const;
  void register_arrays(Entry& e);
  std::vector<std::unique_ptr<Entry>> entries_;  // boxed: registered pointers stay valid
};

}  // namespace ft::nn
