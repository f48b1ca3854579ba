// Knowledge distillation: a student learns from the targets and from a teacher's
// next-token distributions on the same tokens.
#pragma once

#include <mlx/array.h>

namespace ft::train {

namespace mx = mlx::core;

struct DistillOptions {
  float weight = 0.5f;       // W, in [0, 1]: the share of the KL term
  float temperature = 2.0f;  // T > 0: both distributions are softened by it
  int ignore_index = -100;
};

// The SUM over trained tokens (targets != ignore_index) of
//   (1 - W) * CE(student, target) + W * T^2 * KL(softmax(teacher / T) || softmax(student / T)),
// an f32 scalar (f64 for f64 logits), as a LossFn's loss_sum: divide by
// num_valid_tokens(targets) for the mean. The T^2 keeps the KL term's gradient on the
// scale of the CE term's as T grows (Hinton et al. 2015). student_logits and
// teacher_logits (..., vocab) of any floating dtype, targets (...) integer; the teacher
// gets no gradient. Throws ft::Error when W or T is out of range, the vocab sizes differ
// (the teacher must share the student's tokenizer) or the shapes do not fit.
mx::array distillation_loss(const mx::array& student_logits, const mx::array& teacher_logits,
                            const mx::array& targets, const DistillOptions& options = {});

}  // namespace ft::train
