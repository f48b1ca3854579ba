// Building models from Hugging Face folders: config.json's model_type picks a family,
// whose reader turns the config into a LlamaConfig, and the weights load strictly.
//
// Known families: llama (1, 2, 3, 3.1, 3.2; rope_scaling llama3, linear, dynamic),
// mistral (sliding-window attention), qwen2 (q/k/v bias), qwen3 (q/k RMSNorm). All four
// are switches of the Llama blocks in llama.h, so each registry entry is a config
// reader only.
#pragma once

#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "ft/io/model_folder.h"
#include "ft/models/llama.h"

namespace ft::models {

// Reads the fields every family shares: sizes, heads, head_dim, rope_theta and
// rope_scaling (or transformers 5's rope_parameters), rms_norm_eps,
// tie_word_embeddings, attention_bias, mlp_bias, max_position_embeddings. Throws
// ft::Error naming config.json and the field for missing or ill-typed values and for an
// unknown rope type.
LlamaConfig read_llama_config(const io::ModelConfig& config);

// config.json's model_type through the registry. Throws ft::Error for a missing or
// unknown model_type, listing the known ones.
LlamaConfig from_hf_config(const io::ModelConfig& config);

using ConfigReader = std::function<LlamaConfig(const io::ModelConfig&)>;
// Adds or replaces the reader of a model_type.
void register_model_type(const std::string& model_type, ConfigReader reader);
// Registered model types, sorted.
std::vector<std::string> known_model_types();

// A model from folder/config.json with the folder's weights (cast to dtype), loaded
// strictly: one ft::Error lists every missing, unexpected or mis-shaped tensor.
// Tensors a checkpoint may carry beside the parameters are dropped first: rotary
// inv_freq buffers, and lm_head's when the embeddings are tied.
//
// Quantized folders (mlx-lm's convert -q, or ft's quantize_model and a save): every
// module whose weights come as MLX affine "weight" (uint32), "scales" and "biases"
// becomes an nn::QuantizedLinear or nn::QuantizedEmbedding with the group size and
// bits of config.json's "quantization" (its per-module entry, else the defaults); the
// scales and biases are cast to dtype like every floating tensor. See quantize.h.
std::unique_ptr<LlamaForCausalLM> load_model(const std::filesystem::path& folder,
                                             mx::Dtype dtype = mx::float32);

}  // namespace ft::models
