// Softmax over the last axis of attention scores on the CPU, with the causal structure
// computed in the kernel (no mask array) and one vectorised exp per kept element: MLX's CPU
// softmax evaluates a libm exp per value on one thread.
#pragma once

#include <optional>

#include <mlx/array.h>
#include <mlx/stream.h>

namespace ft::kernels::cpu {

namespace mx = mlx::core;

// The causal pattern of a (..., R, K) score array: row r of the last-but-one axis is query
// q = r mod queries and sees keys j <= offset + q; the other keys get probability 0. R may be
// a multiple of queries (query groups stacked along that axis). offset >= 0.
struct CausalMask {
  int queries;
  int offset;
};

// softmax(scores, -1) with the causal pattern and/or an array mask applied first: a bool
// mask (true = keep) replaces dropped scores by the dtype's lowest finite value, as MLX's
// attention does (a row with no kept key becomes uniform); any other mask is added to the
// scores (a row of -inf becomes NaN). The mask broadcasts to scores. scores: float32,
// bfloat16 or float16 on a CPU stream (masked_softmax_supported); the result has its shape
// and dtype, computed in float32 and rounded once. Differentiable in scores (and in an
// additive mask): dscores = p * (g - sum(p * g, -1)), also a CPU kernel.
mx::array masked_softmax(const mx::array& scores, std::optional<CausalMask> causal,
                         const std::optional<mx::array>& mask, mx::Stream s);

// Whether masked_softmax takes this dtype on this stream.
bool masked_softmax_supported(mx::Dtype dtype, mx::Stream s);

}  // namespace ft::kernels::cpu
