// GGUF files (llama.cpp's model format) as Hugging Face models. ft's reader (gguf_file.h)
// gives the tensors and the metadata; this turns the metadata into the config.json
// transformers would have for the model and the tensors into its names.
//
// Architectures (GgufArch): llama, qwen2, qwen3, phi3, gemma2 and gemma3. Tensors in F32, F16 or
// BF16, Q4_0, Q4_1 and Q8_0 matrices kept quantized as MLX affine groups of 32 (the same values),
// and Q5_0, Q5_1, Q2_K, Q4_K, Q5_K and Q6_K dequantized to float32. llama.cpp's converter stores a
// llama's attn_q and attn_k with each head's rotary halves interleaved (its permute); the rows are
// put back in transformers' order.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include <mlx/array.h>
#include <nlohmann/json.hpp>

#include "ft/core/param_map.h"
#include "ft/io/gguf_file.h"

namespace ft::io {

// One architecture as GGUF files hold it: llama.cpp's names and what its converter
// changes in the weights.
struct GgufArch {
  std::string name;        // general.architecture, the metadata keys' prefix
  std::string model_type;  // config.json's
  std::string hf_class;    // config.json's architectures[0]
  // A block's modules: llama.cpp's name -> transformers' ("attn_q" -> "self_attn.q_proj").
  std::vector<std::pair<std::string, std::string>> modules;
  bool interleaved_rotary = false;  // q and k rows permuted (permute_rotary_rows)
  bool norms_plus_one = false;      // norm weights stored as 1 + w (Gemma's converter)
};

// The architecture of general.architecture `name`, or of config.json's model_type; null
// when ft has none.
const GgufArch* find_gguf_arch(const std::string& name);
const GgufArch* gguf_arch_of_model_type(const std::string& model_type);

struct GgufModel {
  nlohmann::json config;  // config.json's keys: model_type, hidden_size, ..., quantization
  ParamMap weights;       // under transformers' names; quantized: .weight, .scales, .biases
  // Quantized types of the file that were dequantized to float32 (K-quants and others
  // without an exact MLX form), for a note to the user.
  std::vector<std::string> dequantized_types;
};

// The config.json transformers would have for the file's model, from its metadata and
// tensor infos (no tensor is read), with MLX's "quantization" entry for the matrices that
// stay quantized. Throws ft::Error as read_gguf_model does.
nlohmann::json gguf_model_config(const GgufFile& gguf);

// Throws ft::Error naming the file for a file that is not valid GGUF, an unsupported
// architecture, metadata a model needs that is missing, or tensors of a type not yet
// supported.
GgufModel read_gguf_model(const std::filesystem::path& file);

// llama.cpp's name of a transformers tensor name ("model.layers.3.self_attn.q_proj.weight"
// -> "blk.3.attn_q.weight") in arch; empty when it has none. The inverse of the names the
// reader maps.
std::string gguf_tensor_name(const GgufArch& arch, const std::string& hf);

// llama.cpp's row order for attn_q and attn_k: each head's rotary halves interleaved, rows
// (heads, 2, head_dim / 2) -> (heads, head_dim / 2, 2). The reader undoes it.
mx::array permute_rotary_rows(const mx::array& w, int heads);

// llama.cpp's rope_freqs tensor for Llama 3's rotary scaling (rope_type llama3 in
// config.json): for each pair of the head's dimensions, the factor its frequency is divided
// by (1 for short wavelengths, factor for long ones, interpolated between), as llama.cpp's
// converter computes it. The reader turns such a tensor back into the llama3 parameters.
std::vector<float> llama3_rope_freqs(int head_dim, double theta, double factor, double low,
                                     double high, double original_context);

// Whether path names a GGUF file (a regular file ending in .gguf).
bool is_gguf_file(const std::filesystem::path& path);

}  // namespace ft::io
