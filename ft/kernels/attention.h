// Scaled dot-product attention with ft's CPU softmax on CPU streams.
#pragma once

#include <optional>
#include <string>

#include <mlx/array.h>
#include <mlx/utils.h>

namespace ft::kernels {

namespace mx = mlx::core;

// softmax(scale * q @ kᵀ + mask) @ v, the contract of mx::fast::scaled_dot_product_attention:
// q (B, Hq, L, D), k and v (B, Hkv, K, D) with Hq a multiple of Hkv (grouped-query heads:
// query head h reads key head h / (Hq / Hkv)); result (B, Hq, L, D) in q's dtype. mask_mode
// "causal" aligns the queries to the end of the keys (query i sees keys <= K - L + i), "array"
// takes `mask` (bool, true = keep, or additive; broadcastable to (B, Hq, L, K)), "" none. On a
// CPU stream: without a mask array, where cpu::fused_attention_supported (float32, a head
// dimension that is a multiple of 16), cpu::fused_attention, in blocks without the score
// matrix; otherwise, for float32, bfloat16 or float16, the scores come from MLX matmuls and
// the softmax from cpu::masked_softmax (one vectorised exp per kept score, rows over threads,
// the causal pattern without a mask array). Elsewhere mx::fast::scaled_dot_product_attention
// runs.
// Throws ft::Error for shapes or modes that do not fit.
mx::array attention(const mx::array& q, const mx::array& k, const mx::array& v, float scale,
                    const std::string& mask_mode = "", const std::optional<mx::array>& mask = {},
                    mx::StreamOrDevice s = {});

// Whether attention(q, ...) on s runs ft's CPU path.
bool attention_uses_cpu_kernel(const mx::array& q, mx::StreamOrDevice s = {});

}  // namespace ft::kernels
