// GGUF files (llama.cpp's model format) as Hugging Face models. ft's reader (gguf_file.h)
// gives the tensors and the metadata; this turns the metadata into the config.json
// transformers would have for the model and the tensors into its names.
//
// Supported so far: general.architecture "llama", tensors in F32, F16 or BF16. llama.cpp
// stores attn_q and attn_k with each head's rotary halves interleaved
// (convert_hf_to_gguf.py's permute); the rows are put back in transformers' order.
#pragma once

#include <filesystem>

#include <nlohmann/json.hpp>

#include "ft/core/param_map.h"

namespace ft::io {

struct GgufModel {
  nlohmann::json config;  // config.json's keys: model_type, hidden_size, ...
  ParamMap weights;       // under transformers' names
};

// Throws ft::Error naming the file for a file that is not valid GGUF, an unsupported
// architecture, metadata a model needs that is missing, or tensors of a type not yet
// supported.
GgufModel read_gguf_model(const std::filesystem::path& file);

// Whether path names a GGUF file (a regular file ending in .gguf).
bool is_gguf_file(const std::filesystem::path& path);

}  // namespace ft::io
