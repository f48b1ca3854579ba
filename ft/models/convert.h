// Model folders in other forms: `ft quantize` (a float model as an MLX quantized folder,
// the layout mlx-lm writes and loads) and `ft convert` (pytorch_model.bin to safetensors,
// an MLX quantized folder back to floats, a GGUF file to a Hugging Face folder).
//
// Every output is built beside the output folder and renamed into place at the end
// (io::save_model_folder), so a failed run leaves nothing that looks complete. An output
// folder that exists and is not empty is refused unless overwrite is set.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <mlx/array.h>

#include "ft/io/model_folder.h"
#include "ft/models/quantize_recipe.h"

namespace ft::models {

namespace mx = mlx::core;

struct QuantizeFolderOptions {
  io::QuantSpec defaults;             // for modules no recipe rule decides
  std::optional<QuantRecipe> recipe;  // per-module settings
  // The dtype the weights are loaded in, and so the scales' and biases' dtype; nullopt:
  // config.json's (io::config_dtype).
  std::optional<mx::Dtype> dtype;
  bool overwrite = false;
};

// ft quantize: loads a float model (a folder or a GGUF file with float matrices),
// quantizes every Linear, Embedding and stacked expert weight as the options say (layers
// whose input size their group size does not divide stay in floats, as in mlx-lm) and
// writes out_dir: config.json with "quantization" and "quantization_config" (defaults,
// an entry for each module quantized otherwise, false for each kept in floats), weights
// "<module>.weight" (uint32), ".scales", ".biases", tokenizer files copied (a GGUF file's
// written as tokenizer.json and tokenizer_config.json). Returns the quantized paths.
// Throws ft::Error for an unreadable model, a quantized one, a recipe rule that matches
// no module, or an output folder that is not empty.
std::vector<std::string> quantize_model_folder(const std::filesystem::path& model,
                                               const std::filesystem::path& out_dir,
                                               const QuantizeFolderOptions& options);

enum class Conversion {
  kTorchToSafetensors,  // pytorch_model.bin (or its shards) -> safetensors, tensors as they are
  kDequantize,          // an MLX quantized folder -> floats
  kGgufToFolder,        // a GGUF file -> a Hugging Face folder
};

// How `ft convert` reports what it did ("pytorch_model.bin to safetensors", ...).
std::string conversion_name(Conversion conversion);

struct ConvertOptions {
  // The written weights' dtype, named in config.json's torch_dtype / dtype. Quantized
  // layers are dequantized in the scales' dtype (a GGUF file's in float32) and then cast;
  // by default a dequantized folder keeps the scales' dtype, a GGUF file's is float32 and
  // a PyTorch checkpoint's tensors keep their own.
  std::optional<mx::Dtype> dtype;
  bool overwrite = false;
};

// ft convert: what the input is decides what is written.
//  - A GGUF file: config.json from its metadata (io::gguf_model_config, without
//    quantization), its tensors under transformers' names with attn_q / attn_k rows back in
//    transformers' order and quantized matrices dequantized, tokenizer.json and
//    tokenizer_config.json (with the chat template) from its tokenizer metadata.
//  - A folder whose config.json has MLX's "quantization": every quantized layer as
//    mx::dequantize gives it, config.json without the quantization entries.
//  - A folder with pytorch_model.bin (or pytorch_model.bin.index.json) and no safetensors:
//    the same tensors, names and dtypes in safetensors shards, config.json as it is.
// Tokenizer files are copied. Throws ft::Error naming the input for anything else (a float
// safetensors folder has nothing to convert) and for an output folder that is not empty.
Conversion convert_model(const std::filesystem::path& input, const std::filesystem::path& out_dir,
                         const ConvertOptions& options = {});

}  // namespace ft::models
