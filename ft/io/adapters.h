// LoRA/DoRA adapters on disk, in the two layouts other tools read:
//
//   PEFT:   adapter_model.safetensors + adapter_config.json (peft_type LORA). Tensors
//           "base_model.model.<module>.lora_A.weight" (r, in), ".lora_B.weight"
//           (out, r) and, for DoRA, ".lora_magnitude_vector" (out,). Stacked expert
//           parameters (PEFT 0.21's target_parameters, e.g. "mlp.experts.gate_up_proj")
//           have lora_A (E*r, in) and lora_B (out, E*r) under the experts module with one
//           ".base_layer" per parameter wrapped after them (Note [PEFT's names for stacked
//           parameters] in peft_adapter.cpp).
//   mlx-lm: adapters.safetensors + adapter_config.json (fine_tune_type lora|dora,
//           num_layers, lora_parameters {rank, scale, dropout, keys}). Tensors
//           "<module>.lora_a" (in, r), ".lora_b" (r, out) (transposed against PEFT)
//           and, for DoRA, ".m" (out,). It has no form for stacked expert parameters.
//
// In memory an adapter is ft's own names (Note [LoRA parameter names] in nn/lora.h):
// "<module>.lora_A" (r, in), ".lora_B" (out, r), ".lora_magnitude" (out,), and for a
// stacked parameter "<experts>.<parameter>.lora_A" (E*r, in), ".lora_B" (out, E*r).
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "ft/core/param_map.h"
#include "ft/nn/lora.h"
#include "ft/nn/module.h"

namespace ft::io {

enum class AdapterFormat { peft, mlx_lm };

struct Adapter {
  AdapterFormat format = AdapterFormat::peft;
  // The adapted modules are named exactly: target_regex matches these paths and no
  // others, whatever targets the file's config used.
  nn::LoraConfig config;
  std::vector<std::string> modules;     // adapted module (or stacked parameter) paths, sorted
  std::vector<std::string> stacked;     // those of modules that are stacked parameters, sorted
  ParamMap weights;                     // ft's names, float arrays as stored
  std::string base_model_name_or_path;  // PEFT only; empty otherwise
};

// Where PEFT's module paths differ from ft's by a prefix: a multimodal model's
// transformers class holds the text model ft loads one level down (Gemma 3's
// Gemma3ForConditionalGeneration: ft's "model.layers.0.self_attn.q_proj" is its
// "model.language_model.layers.0.self_attn.q_proj"). Empty: the same paths.
struct ModulePrefix {
  std::string ours;    // e.g. "model."
  std::string theirs;  // e.g. "model.language_model."
  // path with ours replaced by theirs (unchanged when it does not start with ours).
  std::string to_theirs(const std::string& path) const;
  // The reverse; a path already in ft's form is kept.
  std::string to_ours(const std::string& path) const;
};

// The adapter parameters of every LoRA/DoRA wrapper and ExpertLoRA under model, in ft's
// names.
ParamMap adapter_parameters(const nn::Module& model);

// Writes out_dir in PEFT's layout. config supplies alpha, dropout, rsLoRA and DoRA (the
// rank and the adapted modules come from the model); adapted stacked parameters go into
// target_parameters; module paths go through prefix.to_theirs. The folder is built beside
// out_dir and renamed into place; an existing out_dir is replaced. Throws ft::Error when
// the model has no adapters.
void save_peft_adapter(const nn::Module& model, const nn::LoraConfig& config,
                       const std::string& base_model_name_or_path,
                       const std::filesystem::path& out_dir, const ModulePrefix& prefix = {});

// Writes out_dir in mlx-lm's layout, atomically as above. mlx-lm adapts the same keys in
// each of the last num_layers decoder layers, so the adapted modules must all sit under
// "model.layers.<i>." and form such a set, and none may be a stacked parameter;
// otherwise ft::Error.
void save_mlx_lm_adapter(const nn::Module& model, const nn::LoraConfig& config,
                         const std::filesystem::path& out_dir);

// Reads either layout (told apart by the weights file's name). Throws ft::Error naming
// the file for a missing or unreadable file, an unsupported setting (PEFT rank_pattern,
// alpha_pattern, a bias, a peft_type other than LORA) or inconsistent tensors. PEFT nests
// the wrappers of several stacked parameters of one module in the order the module holds
// them: model, when given, supplies that order; without it, the order target_parameters
// lists them in is taken (as ft writes them). PEFT's module paths go through
// prefix.to_ours.
Adapter load_adapter(const std::filesystem::path& dir, const nn::Module* model = nullptr,
                     const ModulePrefix& prefix = {});

// apply_lora with the adapter's config, then the adapter's values. Every adapted module
// must exist in model as a Linear or QuantizedLinear of matching shape (a stacked
// parameter as one of an nn::ExpertWeights of matching shape); otherwise one
// ft::Error naming the adapter file lists every problem and the model is left untouched.
// The adapter's arrays are cast to dtype when given (e.g. the model's compute dtype), else
// kept as stored. Returns the adapted paths.
std::vector<std::string> apply_adapter(nn::Module& model, const std::filesystem::path& dir,
                                       std::optional<mx::Dtype> dtype = std::nullopt,
                                       const ModulePrefix& prefix = {});

// The folder of an adapter's files: dir, or dir/adapter for a training checkpoint
// (checkpoints/step-N holds the adapter of its step there).
std::filesystem::path adapter_folder(const std::filesystem::path& dir);

// The chat template an adapter was trained with, kept beside its weights as this file
// (`ft train --template` writes it; generate, eval, fuse and export use it).
inline constexpr const char* kChatTemplateFile = "chat_template.jinja";
// dir / kChatTemplateFile when the adapter has one, else nullopt.
std::optional<std::filesystem::path> adapter_chat_template(const std::filesystem::path& dir);

}  // namespace ft::io
