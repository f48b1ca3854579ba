// Training losses: cross-entropy (with ignore_index and label smoothing), MSE, distillation
// KL divergence, token accuracy. All compute in f32 (f64 stays f64) whatever the input dtype,
// and all are built from ordinary MLX ops, so value_and_grad and compile go through them.
#pragma once

#include <optional>
#include <string>

#include <mlx/array.h>

namespace ft::train {

namespace mx = mlx::core;

enum class Reduction {
  mean,  // over non-ignored tokens (cross_entropy, kl_div) or all elements (mse)
  sum,
  none,  // one value per token (per element for mse)
};

// "mean" | "sum" | "none"; anything else is an ft::Error.
Reduction parse_reduction(const std::string& name);
const char* reduction_name(Reduction reduction);

struct CrossEntropyOptions {
  int ignore_index = -100;
  float label_smoothing = 0.0f;  // in [0, 1]
  Reduction reduction = Reduction::mean;
};

// torch.nn.functional.cross_entropy over the last axis.
// logits (..., vocab) of any floating dtype, targets (...) of an integer dtype.
// Per token: (1 - s) * (-log p[target]) + s * mean_c(-log p[c]); 0 where target ==
// ignore_index. mean divides the sum by the number of non-ignored tokens (NaN when there
// are none, as in PyTorch); none returns (...) f32. Targets outside [0, vocab) that are not
// ignore_index give an unspecified value (they cannot be checked without evaluating).
mx::array cross_entropy(const mx::array& logits, const mx::array& targets,
                        const CrossEntropyOptions& options = {});

// Number of targets != ignore_index, as an int32 scalar. A trainer that accumulates
// micro-batches sums cross_entropy(..., sum) and this count, and divides once at the end.
mx::array num_valid_tokens(const mx::array& targets, int ignore_index = -100);

// Mean squared error; pred and target must have the same shape. mean is over all elements.
mx::array mse(const mx::array& pred, const mx::array& target,
              Reduction reduction = Reduction::mean);

struct KlDivOptions {
  float temperature = 1.0f;  // > 0
  // (...) bool or numeric, nonzero = token counts; absent = every token counts.
  std::optional<mx::array> mask = std::nullopt;
  Reduction reduction = Reduction::mean;  // mean is over the counted tokens
};

// Distillation loss KL(softmax(teacher / T) || softmax(student / T)) * T^2 per token, summed
// over the vocab. student_logits and teacher_logits have the same shape (..., vocab); the
// teacher gets no gradient.
mx::array kl_div(const mx::array& student_logits, const mx::array& teacher_logits,
                 const KlDivOptions& options = {});

// Fraction of non-ignored tokens with argmax(logits) == target, an f32 scalar (NaN when none).
mx::array token_accuracy(const mx::array& logits, const mx::array& targets,
                         int ignore_index = -100);

// The dtype losses are computed in: f64 for f64 inputs, f32 for everything else.
mx::Dtype loss_dtype(mx::Dtype input);

}  // namespace ft::train
