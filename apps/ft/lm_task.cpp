#include "apps/ft/lm_task.h"

#include <fstream>
#include <unordered_map>

#include <mlx/io.h>
#include <mlx/ops.h>
#include <mlx/transforms.h>

#include "ft/core/error.h"
#include "ft/io/model_folder.h"
#include "ft/kernels/linear_cross_entropy.h"
#include "ft/models/attention_mask.h"
#include "ft/train/losses.h"

namespace ft::cli {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// Batches are {inputs, targets, segment ids, positions}. Padded rows put padding after
// each sample, so plain causal attention keeps it out of every predicted token; packed
// rows hold several samples, which must not see each other (segment_causal_mask).
mx::array hidden_states(models::LlamaForCausalLM& model, const Batch& batch, bool packed) {
  if (packed && batch.size() > 2)
    return model.hidden_states(batch[0], models::segment_causal_mask(batch[2]));
  return model.hidden_states(batch[0]);
}

// Whether the output projection's weight is trained: lm_head, or the embedding when tied.
// Under LoRA it is frozen, and linear_cross_entropy then skips its gradient's matmuls.
bool output_weight_trained(const models::LlamaForCausalLM& model) {
  ParamMap trainable = model.trainable_parameters();
  return trainable.contains("lm_head.weight") || trainable.contains("model.embed_tokens.weight");
}

}  // namespace

LossFn causal_lm_loss(bool packed) {
  return [packed](nn::Module& m, const Batch& batch, const mx::array&) {
    auto& model = static_cast<models::LlamaForCausalLM&>(m);
    mx::array hidden = hidden_states(model, batch, packed);
    kernels::LinearCrossEntropyOptions ce;
    ce.reduction = train::Reduction::sum;
    ce.weight_grad = output_weight_trained(model);
    mx::array loss = kernels::linear_cross_entropy(hidden, model.output_weight(), batch[1], ce);
    return LossOutput{loss, train::num_valid_tokens(batch[1])};
  };
}

LossFn causal_lm_distill_loss(std::shared_ptr<models::LlamaForCausalLM> teacher,
                              const models::LlamaForCausalLM& student,
                              const train::DistillOptions& options, bool packed) {
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
    auto& model = static_cast<models::LlamaForCausalLM&>(m);
    mx::array hidden = hidden_states(model, batch, packed);
    mx::array logits = mx::matmul(hidden, mx::transpose(model.output_weight()));  // (B, L, V)
    mx::array teacher_hidden = hidden_states(*teacher, batch, packed);
    mx::array teacher_logits = mx::stop_gradient(
        mx::matmul(teacher_hidden, mx::transpose(teacher->output_weight())));  // (B, L, V)
    mx::array loss = train::distillation_loss(logits, teacher_logits, batch[1], options);
    return LossOutput{loss, train::num_valid_tokens(batch[1])};
  };
}

train::EvalFn causal_lm_eval(bool packed) {
  return [packed](nn::Module& m, const Batch& batch) {
    auto& model = static_cast<models::LlamaForCausalLM&>(m);
    const mx::array& targets = batch[1];  // (B, L)
    mx::array hidden = hidden_states(model, batch, packed);
    kernels::LinearCrossEntropyOptions ce;
    ce.reduction = train::Reduction::sum;
    ce.gradients_in_forward = false;  // no backward follows
    mx::array loss = kernels::linear_cross_entropy(hidden, model.output_weight(), targets, ce);
    mx::array logits = mx::matmul(hidden, mx::transpose(model.output_weight()));  // (B, L, V)
    mx::array predicted = mx::argmax(logits, -1);
    mx::array valid = mx::not_equal(targets, mx::array(-100));
    mx::array hits =
        mx::logical_and(valid, mx::equal(predicted, mx::astype(targets, predicted.dtype())));
    return train::EvalOutput{loss, mx::sum(valid), mx::sum(hits)};
  };
}

}  // namespace ft::cli
