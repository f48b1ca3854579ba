#include "ft/models/convert.h"

#include <algorithm>
#include <set>

#include <mlx/ops.h>
#include <nlohmann/json.hpp>

#include "ft/core/error.h"
#include "ft/io/gguf.h"
#include "ft/io/gguf_file.h"
#include "ft/io/gguf_tokenizer.h"
#include "ft/io/safetensors_file.h"
#include "ft/models/quantize.h"
#include "ft/models/registry.h"
#include "ft/nn/quantized_linear.h"

namespace ft::models {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

bool has_suffix(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Before any work: the input exists, and the output is a new or empty folder (or
// overwrite), and not the input itself.
void check_paths(const char* place, const fs::path& input, const fs::path& out, bool overwrite) {
  std::error_code ec;
  FT_CHECK(fs::exists(input, ec), place, input.string(), ": no such file or folder");
  FT_CHECK(!out.empty(), place, "the output folder needs a name");
  if (!fs::exists(out, ec)) return;
  FT_CHECK(fs::is_directory(out, ec), place, out.string(), ": exists and is not a folder");
  FT_CHECK(!fs::equivalent(input, out, ec), place, out.string(),
           ": is the input; write to another folder");
  FT_CHECK(overwrite || fs::is_empty(out, ec), place, out.string(),
           ": exists and is not empty; pass --overwrite to replace it");
}

// The tokenizer the output carries: a folder's files copied, a GGUF file's written.
io::SaveOptions tokenizer_files(const fs::path& model) {
  io::SaveOptions save;
  if (io::is_gguf_file(model)) {
    const io::GgufFile gguf = io::read_gguf_file(model);
    if (!gguf.find("tokenizer.ggml.model")) return save;  // a file without a tokenizer
    const io::TokenizerFiles files = io::gguf_tokenizer_files(gguf);
    save.json_files = {{"tokenizer.json", json::parse(files.tokenizer_json)},
                       {"tokenizer_config.json", json::parse(files.tokenizer_config_json)}};
    return save;
  }
  std::error_code ec;
  for (const char* name : {"tokenizer.json", "tokenizer_config.json", "tokenizer.model",
                           "vocab.json", "generation_config.json"})
    if (fs::is_regular_file(model / name, ec)) save.copy_tokenizer_from = model;
  return save;
}

// The dtype of the folder's first quantization scales (what mx::dequantize returns),
// read from the safetensors headers; nullopt when there are none.
std::optional<mx::Dtype> scales_dtype(const fs::path& folder) {
  std::error_code ec;
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(folder, ec))
    if (has_suffix(entry.path().filename().string(), ".safetensors")) files.push_back(entry.path());
  std::sort(files.begin(), files.end());
  for (const auto& file : files)
    for (const auto& tensor : io::read_safetensors_header(file).tensors)
      if (has_suffix(tensor.name, ".scales") || has_suffix(tensor.name, "_scales"))
        return tensor.dtype;
  return std::nullopt;
}

bool has_torch_weights(const fs::path& folder) {
  std::error_code ec;
  return fs::is_regular_file(folder / "pytorch_model.bin", ec) ||
         fs::is_regular_file(folder / "pytorch_model.bin.index.json", ec);
}

bool has_safetensors(const fs::path& folder) {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(folder, ec))
    if (has_suffix(entry.path().filename().string(), ".safetensors")) return true;
  return false;
}

// A model's parameters with every quantized layer as floats: loaded and dequantized in
// load_dtype (mx::dequantize in the scales' dtype), then cast to out_dtype, so that a
// narrower output is rounded once.
ParamMap dequantized_parameters(const fs::path& model, mx::Dtype load_dtype, mx::Dtype out_dtype) {
  auto loaded = load_model(model, load_dtype);
  dequantize_model(*loaded);
  return tree_map(loaded->parameters(), [&](const mx::array& a) {
    return mx::issubdtype(a.dtype(), mx::floating) ? mx::astype(a, out_dtype) : a;
  });
}

}  // namespace

std::vector<std::string> quantize_model_folder(const fs::path& model, const fs::path& out_dir,
                                               const QuantizeFolderOptions& options) {
  constexpr const char* place = "quantize";
  check_paths(place, model, out_dir, options.overwrite);
  FT_CHECK(io::is_model_path(model), place, model.string(), ": not a model folder or GGUF file");
  const io::ModelConfig config = io::read_config(model);
  FT_CHECK(!io::quantization_config(config), place, config.file().string(),
           ": the model is quantized already; ft convert turns it back into floats");
  nn::check_quantization(place, 128, options.defaults.group_size, options.defaults.bits);
  auto loaded = load_model(model, options.dtype.value_or(io::config_dtype(config)));

  io::QuantizationConfig plan{.defaults = options.defaults, .modules = {}};
  if (options.recipe)
    plan = plan_quantization(*options.recipe, options.defaults, quantizable_paths(*loaded));
  const std::vector<std::string> quantized =
      options.recipe
          ? quantize_model(*loaded, [&](const std::string& path) { return plan.for_module(path); })
          : quantize_model(*loaded, options.defaults);

  // As mlx-lm writes it: an entry for each module quantized otherwise than the defaults
  // and false for each kept in floats; a layer whose size its group size does not divide
  // stays in floats without one.
  io::QuantizationConfig written{.defaults = plan.defaults, .modules = {}};
  const std::set<std::string> done(quantized.begin(), quantized.end());
  for (const auto& [path, spec] : plan.modules)
    if (!spec || done.count(path)) written.modules[path] = spec;
  json out_config = loaded_config(config);
  set_quantization_config(out_config, written);
  if (options.dtype) io::set_config_dtype(out_config, *options.dtype);
  io::save_model_folder(loaded->parameters(), out_config, out_dir, tokenizer_files(model));
  return quantized;
}

std::string conversion_name(Conversion conversion) {
  switch (conversion) {
    case Conversion::kTorchToSafetensors:
      return "pytorch_model.bin to safetensors";
    case Conversion::kDequantize:
      return "quantized to floating point";
    case Conversion::kGgufToFolder:
      return "GGUF to a Hugging Face folder";
  }
  return "";
}

Conversion convert_model(const fs::path& input, const fs::path& out_dir,
                         const ConvertOptions& options) {
  constexpr const char* place = "convert";
  check_paths(place, input, out_dir, options.overwrite);
  std::error_code ec;

  if (io::is_gguf_file(input)) {
    const mx::Dtype dtype = options.dtype.value_or(mx::float32);
    json config = io::read_config(input).json();
    set_quantization_config(config, std::nullopt);
    io::set_config_dtype(config, dtype);
    io::save_model_folder(dequantized_parameters(input, mx::float32, dtype), config, out_dir,
                          tokenizer_files(input));
    return Conversion::kGgufToFolder;
  }

  FT_CHECK(fs::is_directory(input, ec), place, input.string(),
           ": not a model folder or a .gguf file");
  const bool has_config = fs::is_regular_file(input / "config.json", ec);
  if (has_config) {
    const io::ModelConfig config = io::read_config(input);
    if (io::quantization_config(config)) {
      const mx::Dtype stored = scales_dtype(input).value_or(io::config_dtype(config));
      json out_config = loaded_config(config);
      set_quantization_config(out_config, std::nullopt);
      if (options.dtype) io::set_config_dtype(out_config, *options.dtype);
      io::save_model_folder(dequantized_parameters(input, stored, options.dtype.value_or(stored)),
                            out_config, out_dir, tokenizer_files(input));
      return Conversion::kDequantize;
    }
  }

  FT_CHECK(has_torch_weights(input) && !has_safetensors(input), place, input.string(),
           ": nothing to convert (ft convert takes a folder with pytorch_model.bin, a folder "
           "quantized by MLX or a .gguf file)");
  // The checkpoint's tensors as they are (floating ones cast when a dtype is given); a
  // folder without config.json gets none.
  json config = has_config ? io::read_config(input).json() : json();
  if (has_config && options.dtype) io::set_config_dtype(config, *options.dtype);
  io::save_model_folder(io::load_weights(input, options.dtype), config, out_dir,
                        tokenizer_files(input));
  return Conversion::kTorchToSafetensors;
}

}  // namespace ft::models
