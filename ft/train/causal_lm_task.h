// The causal language-model task that training, evaluation and benchmarks share: the
// next-token loss over a batch of (inputs, targets[, segment ids, positions]) and its
// evaluation, through the model's output head (ft/models/causal_lm.h).
#pragma once

#include <memory>

#include "ft/models/causal_lm.h"
#include "ft/train/distill.h"
#include "ft/train/step.h"     // defines: LossFn, Batch
#include "ft/train/trainer.h"  // defines: train::EvalFn

namespace ft::train {

// Sum of the next-token cross-entropy over the batch's targets (-100 skipped), with a
// mixture-of-experts model's auxiliary loss added once per predicted token (so the
// mean over tokens is Hugging Face's loss + coef * aux). packed: rows hold several
// samples (segment ids in batch[2]) that must not see each other.
//
// The head runs fused with the loss in chunks (kernels::linear_cross_entropy; head_chunk
// tokens each, 0: its automatic size) unless the model soft-caps its logits or its head has
// a bias; then the logits are formed.
LossFn causal_lm_loss(bool packed = false, int head_chunk = 0);

// Distillation from a frozen teacher that shares the student's tokenizer: the sum of
// train::distillation_loss over the batch's targets, the teacher run on the same batch
// (and the same packing mask) under stop_gradient. The full logits of both models exist
// at once, (rows, length, vocab) each. Throws ft::Error when the vocab sizes differ.
LossFn causal_lm_distill_loss(std::shared_ptr<models::CausalLM> teacher,
                              const models::CausalLM& student, const DistillOptions& options,
                              bool packed = false);

// Summed loss, predicted-token count and argmax hits over a batch.
EvalFn causal_lm_eval(bool packed = false);

}  // namespace ft::train
