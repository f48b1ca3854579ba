// Hugging Face model folders: config.json, weights in any format ft reads, and saving
// in the Hugging Face layout.
//
// Weights: model.safetensors; sharded model-*.safetensors with
// model.safetensors.index.json; pytorch_model.bin (or its sharded index); .npz. MLX
// community folders with quantized weights load the same way (packed uint32 weights,
// scales, biases); their config's "quantization" is read by quantization_config().
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include <mlx/array.h>  // defines: mlx::core::Dtype

#include "ft/core/param_map.h"

namespace ft::io {

// config.json with typed access: a missing or ill-typed field is an ft::Error naming
// the file, the field and what was found.
class ModelConfig {
 public:
  ModelConfig(nlohmann::json value, std::filesystem::path file);

  const nlohmann::json& json() const { return json_; }
  const std::filesystem::path& file() const { return file_; }
  bool has(const std::string& key) const;  // present and not null

  int64_t get_int(const std::string& key) const;
  double get_number(const std::string& key) const;
  std::string get_string(const std::string& key) const;
  bool get_bool(const std::string& key) const;
  // The default when the field is absent or null; an error when it has another type.
  int64_t get_int(const std::string& key, int64_t fallback) const;
  double get_number(const std::string& key, double fallback) const;
  std::string get_string(const std::string& key, const std::string& fallback) const;
  bool get_bool(const std::string& key, bool fallback) const;

 private:
  const nlohmann::json& field(const std::string& key) const;
  nlohmann::json json_;
  std::filesystem::path file_;
};

// Whether path is a model ft loads: a folder, or a GGUF file (io::is_gguf_file).
bool is_model_path(const std::filesystem::path& path);

// Reads folder/config.json (or the file itself when given a .json path); for a GGUF file,
// the config its metadata describes (io::gguf_model_config).
ModelConfig read_config(const std::filesystem::path& folder);

// The floating dtype config.json names (torch_dtype, else dtype: float32, bfloat16 or
// float16); float32 when it names none of them.
mlx::core::Dtype config_dtype(const ModelConfig& config);

// MLX affine quantization of a model folder, from config.json's "quantization".
struct QuantSpec {
  int group_size = 64;
  int bits = 4;
};
struct QuantizationConfig {
  QuantSpec defaults;
  // Per-module entries ("model.layers.0.mlp.down_proj": {group_size, bits}); a module
  // mapped to nullopt was left unquantized (the config says false).
  std::map<std::string, std::optional<QuantSpec>> modules;
  // The spec for a module (its name without ".weight"), nullopt when not quantized.
  std::optional<QuantSpec> for_module(const std::string& module) const;
};
// nullopt when config.json has neither "quantization" nor an MLX-style
// "quantization_config" (one without Hugging Face's quant_method).
std::optional<QuantizationConfig> quantization_config(const ModelConfig& config);

// Names of the modules that carry quantized weights: those with .weight, .scales and
// .biases tensors.
std::vector<std::string> quantized_modules(const ParamMap& weights);

// Loads every tensor of a folder (or of one weights file), one tensor at a time,
// casting floating-point tensors to dtype when given. Throws ft::Error naming the file
// and tensor for a missing, corrupt or truncated file or an inconsistent index.
ParamMap load_weights(const std::filesystem::path& folder_or_file,
                      std::optional<mlx::core::Dtype> dtype = std::nullopt);

struct SaveOptions {
  // Tensors are split into model-0000k-of-0000n.safetensors shards of at most this
  // many bytes (a larger single tensor gets a shard of its own) with an index; one
  // shard is written as model.safetensors without an index.
  uint64_t max_shard_bytes = uint64_t{5} << 30;
  // JSON files written beside config.json (name, content): a GGUF model's tokenizer.
  std::vector<std::pair<std::string, nlohmann::json>> json_files;
  // Tokenizer files (tokenizer.json, tokenizer_config.json, ...) copied from here.
  std::optional<std::filesystem::path> copy_tokenizer_from;
};

// Names the dtype of the weights in a config.json: its torch_dtype and dtype keys, whichever
// it has, else "dtype" (transformers 5's key). dtype is float32, bfloat16 or float16.
void set_config_dtype(nlohmann::json& config, mlx::core::Dtype dtype);

// The files of a model folder beside its weights, written into folder: config.json (none
// when config is null; its dtype set by set_config_dtype when given), options.json_files and the
// tokenizer files options names.
void write_model_files(const nlohmann::json& config, const std::filesystem::path& folder,
                       const SaveOptions& options,
                       std::optional<mlx::core::Dtype> dtype = std::nullopt);

// Writes a Hugging Face model folder: weights, config.json (none when config is null; its
// torch_dtype states the dtype the weights are saved in), tokenizer files. The folder
// is built beside `out` and renamed into place at the end, so an interrupted save never
// leaves a folder that looks complete; an existing `out` is replaced.
void save_model_folder(const ParamMap& weights, const nlohmann::json& config,
                       const std::filesystem::path& out, const SaveOptions& options = {});

}  // namespace ft::io
