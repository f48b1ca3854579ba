#include "ft/train/causal_lm_task.h"

#include <mlx/ops.h>
#include <mlx/transforms.h>

#include "ft/core/error.h"
#include "ft/kernels/linear_cross_entropy.h"
#include "ft/models/attention_mask.h"
#include "ft/train/losses.h"

namespace ft::train {

namespace {

// Batches are {inputs, targets, segment ids, positions}. Padded rows put padding after
// each sample, so plain causal attention keeps it out of every predicted token; packed
// rows hold several samples, which must not see each other (segment_causal_mask).
mx::array hidden_states(models::CausalLM& model, const Batch& batch, bool packed) {
  if (packed && batch.size() > 2)
    return model.hidden_states(batch[0], models::segment_causal_mask(batch[2]));
  return model.hidden_states(batch[0]);
}

// Whether the output projection's weight is trained: lm_head, or the embedding when tied.
// Under LoRA it is frozen, and linear_cross_entropy then skips its gradient's matmuls.
bool output_weight_trained(const models::CausalLM& model) {
  return model.trainable_parameters().contains(model.output_weight_name());
}

// The fused chunked head computes plain logits z = h W^T; soft-capped logits and a head
// bias need them formed.
bool plain_head(const models::CausalLM& model) {
  return model.logit_softcap() == 0 && !model.output_bias();
}

}  // namespace

LossFn causal_lm_loss(bool packed, int head_chunk) {
  FT_CHECK(head_chunk >= 0, "train", "the head's chunk size must be >= 0, got ", head_chunk);
  return [packed, head_chunk](nn::Module& m, const Batch& batch, const mx::array&) {
    auto& model = static_cast<models::CausalLM&>(m);
    mx::array hidden = hidden_states(model, batch, packed);
    const mx::array& targets = batch[1];
    mx::array tokens = num_valid_tokens(targets);
    mx::array loss = mx::array(0.0f);
    if (plain_head(model)) {
      kernels::LinearCrossEntropyOptions ce;
      ce.reduction = Reduction::sum;
      ce.chunk_size = head_chunk;
      ce.weight_grad = output_weight_trained(model);
      loss = kernels::linear_cross_entropy(hidden, model.output_weight(), targets, ce);
    } else {
      loss = cross_entropy(model.output_logits(hidden), targets, {.reduction = Reduction::sum});
    }
    if (auto aux = model.auxiliary_loss()) loss = loss + *aux * mx::astype(tokens, mx::float32);
    return LossOutput{loss, tokens};
  };
}

LossFn causal_lm_distill_loss(std::shared_ptr<models::CausalLM> teacher,
                              const models::CausalLM& student, const DistillOptions& options,
                              bool packed) {
  int teacher_vocab = teacher->output_weight().shape(0);
  int student_vocab = student.output_weight().shape(0);
  FT_CHECK(teacher_vocab == student_vocab, "distill", "the teacher has ", teacher_vocab,
           " vocab entries but the student ", student_vocab,
           ": the teacher must share the student's tokenizer");
  teacher->eval();
  teacher->freeze();
  // Row shards read it from their own threads (Note [Row shards on the CPU]): no lazy arrays.
  mx::eval(teacher->parameters().arrays());
  return [teacher, options, packed](nn::Module& m, const Batch& batch, const mx::array&) {
    auto& model = static_cast<models::CausalLM&>(m);
    mx::array hidden = hidden_states(model, batch, packed);
    mx::array logits = model.output_logits(hidden);  // (B, L, V)
    mx::array teacher_logits =
        mx::stop_gradient(teacher->output_logits(hidden_states(*teacher, batch, packed)));
    mx::array loss = distillation_loss(logits, teacher_logits, batch[1], options);
    return LossOutput{loss, num_valid_tokens(batch[1])};
  };
}

EvalFn causal_lm_eval(bool packed) {
  return [packed](nn::Module& m, const Batch& batch) {
    auto& model = static_cast<models::CausalLM&>(m);
    const mx::array& targets = batch[1];  // (B, L)
    mx::array hidden = hidden_states(model, batch, packed);
    mx::array logits = model.output_logits(hidden);  // (B, L, V)
    mx::array loss = mx::array(0.0f);
    if (plain_head(model)) {
      kernels::LinearCrossEntropyOptions ce;
      ce.reduction = Reduction::sum;
      ce.gradients_in_forward = false;  // no backward follows
      loss = kernels::linear_cross_entropy(hidden, model.output_weight(), targets, ce);
    } else {
      loss = cross_entropy(logits, targets, {.reduction = Reduction::sum});
    }
    mx::array predicted = mx::argmax(logits, -1);
    mx::array valid = mx::not_equal(targets, mx::array(-100));
    mx::array hits =
        mx::logical_and(valid, mx::equal(predicted, mx::astype(targets, predicted.dtype())));
    return EvalOutput{loss, mx::sum(valid), mx::sum(hits)};
  };
}

}  // namespace ft::train
