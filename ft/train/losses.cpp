#include "ft/train/losses.h"

#include <mlx/ops.h>
#include <mlx/utils.h>  // operator<< for Dtype in messages

#include "ft/core/error.h"

namespace ft::train {

namespace {

std::string shape_str(const mx::Shape& shape) {
  std::string out = "(";
  for (size_t i = 0; i < shape.size(); ++i) out += (i ? ", " : "") + std::to_string(shape[i]);
  return out + (shape.size() == 1 ? ",)" : ")");
}

mx::Shape leading_shape(const mx::array& a) {
  return mx::Shape(a.shape().begin(), a.shape().end() - 1);
}

// Checks logits (..., vocab) and targets (...) and says what is wrong in the caller's terms.
void check_logits_targets(const char* place, const mx::array& logits, const mx::array& targets) {
  FT_CHECK(logits.ndim() >= 1, place, "logits must have a vocab axis, got a scalar");
  FT_CHECK(mx::issubdtype(logits.dtype(), mx::floating), place, "logits must be floating, got ",
           logits.dtype());
  FT_CHECK(mx::issubdtype(targets.dtype(), mx::integer), place,
           "targets must be integer token ids, got ", targets.dtype());
  FT_CHECK(targets.shape() == leading_shape(logits), place, "targets have shape ",
           shape_str(targets.shape()), " but logits ", shape_str(logits.shape()),
           " need targets of shape ", shape_str(leading_shape(logits)));
}

mx::array reduce(const mx::array& per_token, const mx::array& count, Reduction reduction) {
  switch (reduction) {
    case Reduction::sum:
      return mx::sum(per_token);
    case Reduction::mean:
      return mx::divide(mx::sum(per_token), mx::astype(count, per_token.dtype()));
    case Reduction::none:
      return per_token;
  }
  FT_ASSERT(false);
}

}  // namespace

Reduction parse_reduction(const std::string& name) {
  if (name == "mean") return Reduction::mean;
  if (name == "sum") return Reduction::sum;
  if (name == "none") return Reduction::none;
  throw Error("loss", "unknown reduction '" + name + "' (expected mean, sum or none)");
}

const char* reduction_name(Reduction reduction) {
  switch (reduction) {
    case Reduction::mean:
      return "mean";
    case Reduction::sum:
      return "sum";
    case Reduction::none:
      return "none";
  }
  FT_ASSERT(false);
}

mx::Dtype loss_dtype(mx::Dtype input) {
  return input == mx::float64 ? mx::float64 : mx::float32;
}

mx::array num_valid_tokens(const mx::array& targets, int ignore_index) {
  return mx::sum(
      mx::astype(mx::not_equal(targets, mx::array(ignore_index, targets.dtype())), mx::int32));
}

mx::array cross_entropy(const mx::array& logits, const mx::array& targets,
                        const CrossEntropyOptions& options) {
  check_logits_targets("cross_entropy", logits, targets);
  const float smoothing = options.label_smoothing;
  FT_CHECK(smoothing >= 0.0f && smoothing <= 1.0f, "cross_entropy",
           "label_smoothing must be in [0, 1], got ", smoothing);

  auto z = mx::astype(logits, loss_dtype(logits.dtype()));  // (..., vocab)
  auto valid = mx::not_equal(targets, mx::array(options.ignore_index, targets.dtype()));  // (...)
  // Ignored positions may hold any value (-100); gather from class 0 there and mask later.
  auto safe_targets = mx::where(valid, targets, mx::array(0, targets.dtype()));
  auto target_logit =
      mx::squeeze(mx::take_along_axis(z, mx::expand_dims(safe_targets, -1), -1), -1);  // (...)
  auto lse = mx::logsumexp(z, -1);                                                     // (...)

  // -log p[t] = lse - z[t]; the smoothed term mean_c(-log p[c]) = lse - mean_c(z[c]).
  auto per_token = mx::subtract(lse, target_logit);
  if (smoothing > 0.0f) {
    auto target_part = mx::multiply(mx::array(1.0f - smoothing, z.dtype()), target_logit);
    auto uniform_part = mx::multiply(mx::array(smoothing, z.dtype()), mx::mean(z, -1));
    per_token = mx::subtract(mx::subtract(lse, target_part), uniform_part);
  }
  per_token = mx::where(valid, per_token, mx::array(0.0f, z.dtype()));
  return reduce(per_token, mx::sum(mx::astype(valid, mx::int32)), options.reduction);
}

mx::array mse(const mx::array& pred, const mx::array& target, Reduction reduction) {
  FT_CHECK(pred.shape() == target.shape(), "mse", "pred has shape ", shape_str(pred.shape()),
           " but target has shape ", shape_str(target.shape()));
  auto dtype = loss_dtype(pred.dtype());
  auto diff = mx::subtract(mx::astype(pred, dtype), mx::astype(target, dtype));
  auto squared = mx::square(diff);
  if (reduction == Reduction::mean) return mx::mean(squared);
  if (reduction == Reduction::sum) return mx::sum(squared);
  return squared;
}

mx::array kl_div(const mx::array& student_logits, const mx::array& teacher_logits,
                 const KlDivOptions& options) {
  FT_CHECK(student_logits.ndim() >= 1, "kl_div", "logits must have a vocab axis, got a scalar");
  FT_CHECK(student_logits.shape() == teacher_logits.shape(), "kl_div", "student logits have shape ",
           shape_str(student_logits.shape()), " but teacher logits have shape ",
           shape_str(teacher_logits.shape()));
  FT_CHECK(mx::issubdtype(student_logits.dtype(), mx::floating) &&
               mx::issubdtype(teacher_logits.dtype(), mx::floating),
           "kl_div", "logits must be floating, got ", student_logits.dtype(), " and ",
           teacher_logits.dtype());
  FT_CHECK(options.temperature > 0.0f, "kl_div", "temperature must be positive, got ",
           options.temperature);
  auto token_shape = leading_shape(student_logits);
  if (options.mask) {
    FT_CHECK(options.mask->shape() == token_shape, "kl_div", "mask has shape ",
             shape_str(options.mask->shape()), ", expected ", shape_str(token_shape));
  }

  auto dtype = loss_dtype(mx::promote_types(student_logits.dtype(), teacher_logits.dtype()));
  auto inv_t = mx::array(1.0f / options.temperature, dtype);
  auto s = mx::multiply(mx::astype(student_logits, dtype), inv_t);  // (..., vocab)
  auto t = mx::multiply(mx::astype(mx::stop_gradient(teacher_logits), dtype), inv_t);
  auto log_p_student = mx::subtract(s, mx::logsumexp(s, -1, true));
  auto log_p_teacher = mx::subtract(t, mx::logsumexp(t, -1, true));
  auto per_token =
      mx::sum(mx::multiply(mx::exp(log_p_teacher), mx::subtract(log_p_teacher, log_p_student)), -1);
  per_token = mx::multiply(per_token,
                           mx::array(options.temperature * options.temperature, dtype));  // (...)

  auto weight = options.mask ? mx::astype(mx::not_equal(*options.mask, mx::array(0)), dtype)
                             : mx::ones(token_shape, dtype);  // (...)
  per_token = mx::multiply(per_token, weight);
  return reduce(per_token, mx::sum(weight), options.reduction);
}

mx::array token_accuracy(const mx::array& logits, const mx::array& targets, int ignore_index) {
  check_logits_targets("token_accuracy", logits, targets);
  auto valid = mx::not_equal(targets, mx::array(ignore_index, targets.dtype()));
  auto predicted = mx::argmax(logits, -1);  // (...) uint32
  auto correct = mx::logical_and(
      valid, mx::equal(mx::astype(predicted, mx::int64), mx::astype(targets, mx::int64)));
  return mx::divide(mx::sum(mx::astype(correct, mx::float32)),
                    mx::sum(mx::astype(valid, mx::float32)));
}

}  // namespace ft::train
