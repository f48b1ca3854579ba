// What train and eval share: the causal-LM loss over a data::Batch turned into arrays,
// the evaluation of loss and accuracy, and a minimal adapter folder (adapters.safetensors
// with the trained tensors under their ft names, and adapter_config.json).
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ft/models/llama.h"
#include "ft/nn/lora.h"
#include "ft/train/trainer.h"

namespace ft::cli {

// Sum of the next-token cross-entropy over the batch's targets (inputs, targets, ...).
LossFn causal_lm_loss(bool packed = false);
// Summed loss, predicted-token count and argmax hits over a batch.
train::EvalFn causal_lm_eval(bool packed = false);

// adapter_config.json: method ("lora", "dora" or "full") and the LoRA settings.
nlohmann::json adapter_config_json(const std::string& method, const nn::LoraConfig& lora,
                                   const std::vector<std::string>& adapted);
// Writes the trainable parameters and the config into dir (created).
void save_adapter(const models::LlamaForCausalLM& model, const nlohmann::json& config,
                  const std::filesystem::path& dir);
// Applies the adapter of dir (its config's LoRA settings, or full weights) to the model
// and loads its tensors. Throws ft::Error naming the file for a missing or bad adapter.
void load_adapter(models::LlamaForCausalLM& model, const std::filesystem::path& dir);

}  // namespace ft::cli
