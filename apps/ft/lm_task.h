// What train and eval share: the causal-LM loss over a data::Batch turned into arrays,
// the evaluation of loss and accuracy.
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

}  // namespace ft::cli
