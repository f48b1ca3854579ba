// The output head's projection and softmax cross-entropy in one pass over the vocabulary, on
// the CPU, for a frozen head (LoRA): loss and gradient w.r.t. the hidden states without ever
// holding a row's logits (Note [One pass over the vocabulary] in head_cross_entropy.cpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include <mlx/array.h>
#include <mlx/stream.h>
#include <mlx/utils.h>

#include "ft/kernels/cpu/cross_entropy_primitive.h"

namespace ft::kernels::cpu {

namespace mx = mlx::core;

// with_grad: also return the gradient w.r.t. hidden.
using HeadCrossEntropyOptions = CrossEntropyKernelOptions;

// For hidden h (N, H), weight W (V, H), targets t (N,), with z = h W^T and
// lse_i = log sum_j exp(z_ij):
//   loss_i = lse_i - (1 - s) z_i,t_i - s mean_j z_ij                    (N,) float32
//   dhidden_i = sum_j (softmax(z_i)_j - (1 - s) [j == t_i] - s / V) W_j  (N, H) float32
// Rows whose target is ignore_index get loss 0 and a zero gradient; a target outside [0, V)
// gets a NaN loss. Each row's result depends on that row alone, in a fixed order, so the
// bits are the same on every run, for any thread count and any split of the rows.
// hidden and weight float32, targets integer. Returns {loss} or {loss, dhidden}. Requires
// head_cross_entropy_supported. Not differentiable.
std::vector<mx::array> head_cross_entropy(const mx::array& hidden, const mx::array& weight,
                                          const mx::array& targets,
                                          const HeadCrossEntropyOptions& options = {},
                                          mx::StreamOrDevice s = {});

// Whether head_cross_entropy runs here: a CPU stream, float32 hidden and weight, a hidden size
// that is a multiple of 16, and a processor with AVX2 and FMA.
bool head_cross_entropy_supported(mx::Dtype hidden, mx::Dtype weight, int hidden_size,
                                  mx::StreamOrDevice s = {});

// The bytes one call with the gradient allocates for its work (beyond its inputs and outputs)
// for `rows` rows of `hidden_size` features and a vocabulary of `vocab`, with one thread, and
// the bytes of the packed W that calls keep for the next (once for the process, Note [The
// packed head] in head_cross_entropy.cpp; 0 for a W beyond its budget).
size_t head_cross_entropy_scratch_bytes(int64_t rows, int64_t hidden_size, int64_t vocab);
size_t head_cross_entropy_packed_bytes(int64_t vocab, int64_t hidden_size);

// Frees the packed W kept for the next call, if any.
void release_head_cross_entropy_packing();
// The largest packed W (both layouts, bytes) kept for the next call, 256 MiB at first; a
// larger one is packed a stretch at a time in every call. Frees what is kept; returns the
// previous budget.
int64_t set_head_cross_entropy_packing_budget(int64_t bytes);

}  // namespace ft::kernels::cpu
