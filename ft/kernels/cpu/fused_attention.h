// Scaled dot-product attention for float32 on the CPU in blocks, forward and backward,
// without the score matrix (Note [Attention in blocks] in fused_attention.cpp).
#pragma once

#include <mlx/array.h>
#include <mlx/stream.h>
#include <mlx/utils.h>

namespace ft::kernels::cpu {

namespace mx = mlx::core;

// Whether fused_attention takes inputs of this dtype and head dimension on s: a CPU stream of
// a processor with AVX2 and FMA, float32, a head dimension that is a multiple of 16 up to 256.
bool fused_attention_supported(mx::Dtype dtype, int head_dim, mx::StreamOrDevice s = {});

// softmax(scale * q @ kᵀ + mask) @ v for q (B, Hq, L, D), k and v (B, Hkv, K, D) with Hq a
// multiple of Hkv (query head h reads key head h / (Hq / Hkv)) and K >= 1. causal: query i
// sees keys <= max(0, K - L) + i; else every key. Differentiable w.r.t. q, k and v; the result is
// (B, Hq, L, D) and row-contiguous. Inputs may be strided views (the last axis must have stride 1,
// else they are copied). Throws ft::Error where fused_attention_supported is false or the shapes do
// not fit.
mx::array fused_attention(const mx::array& q, const mx::array& k, const mx::array& v, float scale,
                          bool causal, mx::Stream s);

}  // namespace ft::kernels::cpu
