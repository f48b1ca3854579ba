// Merging an adapter into its base model and writing the result as a Hugging Face
// model folder that loads without ft or PEFT.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ft/nn/module.h"

namespace ft::models {

// Replaces every LoRA/DoRA layer under model by its merged layer and merges every
// adapter on a stacked expert parameter into that parameter (nn::fuse_lora). A
// quantized base is re-quantized with its own group size and bits, or with dequantize
// becomes a plain Linear. Throws ft::Error when the model has no adapters. Returns the
// merged paths.
std::vector<std::string> fuse_adapter(nn::Module& model, bool dequantize = false);

struct FuseOptions {
  bool dequantize = false;
  // Weights are loaded and written in this dtype; nullopt takes config.json's
  // torch_dtype (or dtype) when it names a floating type, else float32.
  std::optional<mx::Dtype> dtype;
};

// ft fuse: loads model_dir, applies the adapter in adapter_dir (PEFT or mlx-lm layout),
// merges it and writes out_dir (config.json from model_dir, or for a multimodal folder
// its text model's, whose weights are what ft loads; tokenizer files copied),
// atomically. A quantized base gives a quantized folder (the adapted layers
// re-quantized with their own group size and bits), or with dequantize a float one:
// every layer dequantized and the quantization entries dropped.
void fuse_model_folder(const std::filesystem::path& model_dir,
                       const std::filesystem::path& adapter_dir,
                       const std::filesystem::path& out_dir, const FuseOptions& options = {});

}  // namespace ft::models
