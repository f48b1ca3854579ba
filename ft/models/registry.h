// Model families and building models from Hugging Face folders: config.json's
// model_type picks a family (ft/models/families/), whose reader turns the config into a
// Config and whose builder makes the CausalLM; the weights then load strictly.
//
// Adding a family: docs/models.md.
#pragma once

#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ft/core/param_map.h"
#include "ft/core/random.h"
#include "ft/io/adapters.h"
#include "ft/io/model_folder.h"
#include "ft/models/causal_lm.h"

namespace ft::models {

// The sizes `ft init` asks of a family for a small random model.
struct InitSizes {
  int vocab_size = 259;
  int hidden_size = 64;
  int intermediate_size = 176;
  int num_hidden_layers = 2;
  int num_attention_heads = 4;
  int num_key_value_heads = 2;
  int bos_token_id = -1;  // -1: none
  int eos_token_id = -1;
};

// The text model inside a multimodal checkpoint (Family::text_part).
struct TextPart {
  nlohmann::json config;      // config.json of the text model alone
  std::string module_prefix;  // e.g. "model.language_model.", ft's "model."
};

struct Family {
  // The config.json model_types it reads, e.g. {"qwen2", "qwen3"}.
  std::vector<std::string> model_types;
  // config.json -> Config. Throws ft::Error naming the file and the field.
  std::function<Config(const io::ModelConfig&)> read_config;
  // A model with random (lazy) weights.
  std::function<std::unique_ptr<CausalLM>(const Config&, Rng&, mx::Dtype)> build;
  // config.json for a small random model of model_type, with the fields transformers
  // writes (ft init).
  std::function<nlohmann::json(const std::string& model_type, const InitSizes&)> init_config;
  // Before a strict load: drops the tensors a checkpoint carries beside the parameters
  // and renames older layouts to the family's names. Throws ft::Error for tensors that
  // belong to another layout. May be empty.
  std::function<void(ParamMap& weights, const Config&)> sanitize;
  // --target-modules when none is given: the attention's projections.
  std::vector<std::string> default_lora_targets;
  // A multimodal config (Gemma 3's "gemma3", whose transformers class holds the text
  // model ft loads one level down) -> the text model's own config.json, which `ft fuse`
  // writes beside the text weights, and where that class keeps what ft names "model."
  // (PEFT's adapter names follow it). nullopt for a text model's config. May be empty.
  std::function<std::optional<TextPart>(const io::ModelConfig&)> text_part = nullptr;
};

// The family of a model_type; throws ft::Error naming `where` and listing the known
// types when there is none.
const Family& family_of(const std::string& model_type, const std::string& where = "model");
// Registered model types, sorted.
std::vector<std::string> known_model_types();

// config.json's model_type through the registry. Throws ft::Error for a missing or
// unknown model_type, listing the known ones, and for fields the family finds wrong
// (naming config.json).
Config from_hf_config(const io::ModelConfig& config);

// A model of the config's family with random weights (lazy: nothing is computed until
// evaluated). Throws ft::Error for an invalid config.
std::unique_ptr<CausalLM> build_model(const Config& config, Rng& rng,
                                      mx::Dtype dtype = mx::float32);

// A model from folder/config.json with the folder's weights (cast to dtype), loaded
// strictly: one ft::Error lists every missing, unexpected or mis-shaped tensor. The
// family's sanitize runs first (rotary inv_freq buffers, a tied head's copy, older
// tensor layouts).
//
// Quantized folders (mlx-lm's convert -q, or ft's quantize_model and a save): every
// module whose weights come as MLX affine "weight" (uint32), "scales" and "biases"
// becomes an nn::QuantizedLinear or nn::QuantizedEmbedding with the group size and
// bits of config.json's "quantization" (its per-module entry, else the defaults); the
// scales and biases are cast to dtype like every floating tensor. See quantize.h.
//
// folder may also be a GGUF file (io/gguf.h): its metadata makes the config, its tensors
// the weights.
std::unique_ptr<CausalLM> load_model(const std::filesystem::path& folder,
                                     mx::Dtype dtype = mx::float32);

// The text model of a multimodal config (Family::text_part), nullopt for a text model.
std::optional<TextPart> text_part(const io::ModelConfig& config);
// The config.json of the weights a model loaded from config holds, for writing them: a
// multimodal config's text model (with the folder's quantization entries), else config.
nlohmann::json loaded_config(const io::ModelConfig& config);
// How PEFT names the modules of a model loaded from config: for a multimodal config, ft's
// "model." is the text part's module prefix; otherwise the same names.
io::ModulePrefix peft_module_prefix(const io::ModelConfig& config);

}  // namespace ft::models
