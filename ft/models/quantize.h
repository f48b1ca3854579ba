// Quantized models: turning a loaded model's layers into MLX affine group-wise quantized
// layers (the frozen base of QLoRA), back into floats, and rebuilding the quantized
// layers a model folder's weights describe.
//
// Which layers: every Linear (q/k/v/o, gate/up/down, an untied lm_head), the embedding
// table, as mlx-lm's convert does, and the stacked expert weights of a mixture of experts
// (nn::ExpertWeights, multiplied through mx::gather_qmm); a layer whose input size (the
// embedding's dim) the group size does not divide stays in floats, and config.json needs
// no entry for it: loaders tell quantized modules by their ".scales" tensors (a stacked
// weight "<path>" by "<path>_scales").
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ft/core/param_map.h"
#include "ft/io/model_folder.h"
#include "ft/nn/module.h"

namespace ft::models {

// Replaces every nn::Linear and nn::Embedding under model whose input size
// spec.group_size divides by its quantized form (nn::QuantizedLinear::from_linear,
// nn::QuantizedEmbedding::from_embedding, nn::StackedWeight::quantized for stacked expert
// weights; scales in the layer's dtype), evaluating each
// as it goes so the float weights can be freed (unless evaluate is false: a model built
// lazily from a config, e.g. to count bytes, stays lazy). Returns the quantized paths in
// named_modules order. Throws ft::Error for bits or a group size MLX's affine mode does
// not pack, when the model already has quantized layers or LoRA/DoRA adapters (quantize
// the base before adding adapters), or when no layer can be quantized.
std::vector<std::string> quantize_model(nn::Module& model, const io::QuantSpec& spec,
                                        bool evaluate = true);

// The spec of a module by its path (a stacked expert weight: "<host path>.<name>"),
// nullopt to leave it in floats.
using QuantSpecFor = std::function<std::optional<io::QuantSpec>(const std::string& path)>;

// The same with a spec per module (ft quantize's recipes): each quantizable module whose
// input size its own group size divides is quantized with its spec. Throws ft::Error for
// a spec MLX does not pack, as above, and when no module is quantized.
std::vector<std::string> quantize_model(nn::Module& model, const QuantSpecFor& spec_for,
                                        bool evaluate = true);

// The paths quantize_model considers, in named_modules order: every Linear and Embedding,
// and every stacked expert weight ("<host path>.<name>").
std::vector<std::string> quantizable_paths(nn::Module& model);

// Replaces every quantized layer under model by a float Linear / Embedding holding its
// dequantized weight (in the scales' dtype), and every quantized stacked expert weight by
// its floats. Returns the paths replaced.
std::vector<std::string> dequantize_model(nn::Module& model);

// Sets config.json's quantization entries as mlx-lm writes them: "quantization":
// {"group_size", "bits"} and the same object under "quantization_config"; with
// nullopt removes both.
void set_quantization_config(nlohmann::json& config, const std::optional<io::QuantSpec>& spec);
// The same with per-module entries: {"group_size", "bits", "<module>": {"group_size",
// "bits"}, "<module>": false, ...}, a module mapped to nullopt written as false (left in
// floats), as mlx-lm writes a model quantized with a per-layer predicate.
void set_quantization_config(nlohmann::json& config, const io::QuantizationConfig& quantization);

// Before a strict load: replaces each module that weights show quantized (it has
// ".weight", ".scales" and ".biases", see io::quantized_modules) by a zero-filled
// quantized layer of the spec config gives it, in the dtype of its scales, and likewise
// each stacked expert weight "<path>" that has "<path>_scales". One
// ft::Error lists every problem: quantized weights without a "quantization" entry in
// config.json or for a module it marks false, weights for a module the model does not
// have or that is neither a Linear nor an Embedding, a spec that does not fit the
// module. Returns the replaced paths.
std::vector<std::string> make_quantized_layers(nn::Module& model, const ParamMap& weights,
                                               const std::optional<io::QuantizationConfig>& config);

// Checks a training request against a model folder's config.json before anything is
// loaded: bits > 0 asks to quantize the base (QLoRA) and needs bits and group_size MLX's
// affine mode packs, and a folder that is not quantized already; full fine-tuning
// (full = true) is refused for a quantized base, given or asked for, whose packed
// weights cannot be trained. Throws ft::Error naming the problem.
void check_quantized_training(const io::ModelConfig& config, int bits, int group_size, bool full);

}  // namespace ft::models
