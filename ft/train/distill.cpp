#include "ft/train/distill.h"

#include <mlx/ops.h>

#include "ft/core/error.h"
#include "ft/train/losses.h"

namespace ft::train {

mx::array distillation_loss(const mx::array& student_logits, const mx::array& teacher_logits,
                            const mx::array& targets, const DistillOptions& options) {
  const float w = options.weight;
  FT_CHECK(w >= 0.0f && w <= 1.0f, "distill", "weight must be in [0, 1], got ", w);
  FT_CHECK(options.temperature > 0.0f, "distill", "temperature must be positive, got ",
           options.temperature);
  FT_CHECK(student_logits.ndim() >= 1 && teacher_logits.ndim() >= 1, "distill",
           "logits must have a vocab axis");
  FT_CHECK(student_logits.shape(-1) == teacher_logits.shape(-1), "distill", "the student has ",
           student_logits.shape(-1), " vocab entries but the teacher ", teacher_logits.shape(-1),
           ": the teacher must share the student's tokenizer");
  // cross_entropy checks the targets' shape against the student's logits, kl_div the
  // teacher's logits against the student's.
  mx::array ce = cross_entropy(student_logits, targets,
                               {.ignore_index = options.ignore_index, .reduction = Reduction::sum});
  if (w == 0.0f) return ce;
  mx::array trained = mx::not_equal(targets, mx::array(options.ignore_index, targets.dtype()));
  mx::array kl =
      kl_div(student_logits, teacher_logits,
             {.temperature = options.temperature, .mask = trained, .reduction = Reduction::sum});
  if (w == 1.0f) return kl;
  return mx::add(mx::multiply(mx::array(1.0f - w, ce.dtype()), ce),
                 mx::multiply(mx::array(w, kl.dtype()), kl));
}

}  // namespace ft::train
