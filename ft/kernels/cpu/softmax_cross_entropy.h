// Softmax cross-entropy and its gradient w.r.t. the logits in one pass, on the CPU: the
// loss of linear_cross_entropy's chunks without MLX's per-value libm exp.
#pragma once

#include <vector>

#include <mlx/array.h>
#include <mlx/stream.h>
#include <mlx/utils.h>

#include "ft/kernels/cpu/cross_entropy_primitive.h"

namespace ft::kernels::cpu {

namespace mx = mlx::core;

// with_grad: also return the gradient w.r.t. the logits.
using SoftmaxCrossEntropyOptions = CrossEntropyKernelOptions;

// For logits z (N, V) and targets t (N,), with lse_i = log sum_j exp(z_ij):
//   loss_i = lse_i - (1 - s) z_i,t_i - s mean_j z_ij          (N,) float32
//   dlogits_ij = softmax(z_i)_j - (1 - s) [j == t_i] - s / V   (N, V) in z's dtype
// Rows whose target is ignore_index get loss 0 and a zero gradient; a target outside
// [0, V) gets a NaN loss. Each row is read three times and exponentiated once (the
// exponentials are kept and scaled by 1 / sum); rows are split over cpu::num_threads()
// threads, each row reduced by one thread in a fixed order, so results are the same bits on
// every run. logits float32, bfloat16 or float16 (math in float32); targets integer.
// Returns {loss} or {loss, dlogits}. The stream must be a CPU stream. Not differentiable.
std::vector<mx::array> softmax_cross_entropy(const mx::array& logits, const mx::array& targets,
                                             const SoftmaxCrossEntropyOptions& options = {},
                                             mx::StreamOrDevice s = {});

// Whether softmax_cross_entropy takes logits of this dtype on this stream.
bool softmax_cross_entropy_supported(mx::Dtype dtype, mx::StreamOrDevice s = {});

}  // namespace ft::kernels::cpu
