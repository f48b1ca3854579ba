// What train and eval share: the causal-LM loss over a data::Batch turned into arrays,
// the evaluation of loss and accuracy.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ft/models/llama.h"
#include "ft/nn/lora.h"
#include "ft/train/distill.h"
#include "ft/train/trainer.h"

namespace ft::cli {

// Sum of the next-token cross-entropy over the batch's targets (inputs, targets, ...).
LossFn causal_lm_loss(bool packed = false);
// Distillation from a frozen teacher that shares the student's tokenizer: the sum of
// train::distillation_loss over the batch's targets, the teacher run on the same batch
// (and the same packing mask) under stop_gradient. The full logits of both models exist
// at once, (rows, length, vocab) each. Throws ft::Error when the vocab sizes differ.
LossFn causal_lm_distill_loss(std::shared_ptr<models::LlamaForCausalLM> teacher,
                              const models::LlamaForCausalLM& student,
                              const train::DistillOptions& options, bool packed = false);
// Summed loss, predicted-token count and argmax hits over a batch.
train::EvalFn causal_lm_eval(bool packed = false);

}  // namespace ft::cli
