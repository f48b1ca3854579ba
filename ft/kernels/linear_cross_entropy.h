// The output projection fused with cross-entropy, in chunks of tokens, so the full
// (tokens, vocab) logits never exist: neither in the forward nor in the backward, which is
// hand-written (custom_vjp). For summed or averaged losses the forward already computes the
// gradients, chunk by chunk (per-token losses recompute each chunk's logits in the
// backward); on the CPU the softmax and cross-entropy of a chunk are one kernel
// (kernels/cpu/softmax_cross_entropy.h). For float32 on an x86 CPU with AVX2, the forward,
// and the gradient w.r.t. hidden of a frozen weight, make one pass over the vocabulary
// without any logits (kernels/cpu/head_cross_entropy.h).
#pragma once

#include <string>

#include <mlx/array.h>

#include "ft/train/losses.h"

namespace ft::kernels {

namespace mx = mlx::core;

struct LinearCrossEntropyOptions {
  int ignore_index = -100;
  float label_smoothing = 0.0f;  // in [0, 1]
  // Tokens per chunk; 0 picks about 8M logits per chunk (32 MiB in f32; on the CPU shared by
  // the row shards running at once), 256M on CUDA, 32M on Metal, at least 128 tokens. Unused where
  // the CPU runs the head in one pass (cpu::head_cross_entropy: float32, a multiple of 16 features,
  // AVX2), which has no chunks: the forward, and the gradients of a frozen weight.
  int chunk_size = 0;
  // mean: over non-ignored tokens; sum; none: per-token losses shaped like targets (f32).
  train::Reduction reduction = train::Reduction::mean;
  // false when the weight is frozen (an lm_head under LoRA): the backward skips the dW
  // matmuls (a quarter of the work) and gives the weight a zero cotangent.
  bool weight_grad = true;
  // Mean and sum reductions: compute the gradients w.r.t. hidden and weight in the forward,
  // chunk by chunk, next to the loss (the backward then only scales them), which saves
  // recomputing every chunk's logits and softmax. Set it to false where no gradient is taken
  // (evaluation): the forward then computes the loss alone. Either way the result is
  // differentiable and the same.
  bool gradients_in_forward = true;
};

// cross_entropy(hidden @ weight^T, targets) without materialising the logits.
// hidden (..., H) and weight (V, H) floating (bf16 allowed: the matmuls run in their promoted
// dtype, logsumexp and the loss in f32); targets (...) integer, ignore_index skipped.
// Differentiable w.r.t. hidden and weight (the weight gradient is computed unless
// options.weight_grad is false: a custom vjp cannot see which gradients the caller wants);
// targets get a zero cotangent.
mx::array linear_cross_entropy(const mx::array& hidden, const mx::array& weight,
                               const mx::array& targets,
                               const LinearCrossEntropyOptions& options = {});

// Reference: the plain matmul, then train::cross_entropy (chunk_size is ignored).
mx::array linear_cross_entropy_composite(const mx::array& hidden, const mx::array& weight,
                                         const mx::array& targets,
                                         const LinearCrossEntropyOptions& options = {});

// The chunk size linear_cross_entropy uses for num_tokens tokens and vocab classes, when
// `concurrent` calls run at once (row shards on the CPU: cpu::concurrent_shards()) and share
// the budget of logits, on a backend: "cpu", "cuda" or "metal" (Note [Chunk size on a GPU]).
int linear_cross_entropy_chunk_size(int num_tokens, int vocab, int requested, int concurrent,
                                    const std::string& backend);

}  // namespace ft::kernels
