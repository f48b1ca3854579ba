#include "ft/kernels/attention.h"

#include <algorithm>

#include <mlx/fast.h>
#include <mlx/ops.h>

#include "ft/core/error.h"
#include "ft/kernels/cpu/fused_attention.h"
#include "ft/kernels/cpu/masked_softmax.h"

namespace ft::kernels {
namespace {

constexpr const char* kPlace = "attention";

void check_inputs(const mx::array& q, const mx::array& k, const mx::array& v,
                  const std::string& mask_mode, const std::optional<mx::array>& mask) {
  FT_CHECK(q.ndim() == 4 && k.ndim() == 4 && v.ndim() == 4, kPlace,
           "q, k and v must be 4-D (batch, heads, length, head_dim), got ", q.shape(), ", ",
           k.shape(), ", ", v.shape());
  FT_CHECK(k.shape(0) == q.shape(0) && v.shape(0) == q.shape(0) && v.shape(1) == k.shape(1) &&
               v.shape(2) == k.shape(2) && k.shape(3) == q.shape(3),
           kPlace, "shapes do not fit: q ", q.shape(), ", k ", k.shape(), ", v ", v.shape());
  FT_CHECK(k.shape(1) > 0 && q.shape(1) % k.shape(1) == 0, kPlace,
           "query heads must be a multiple of key heads, got ", q.shape(1), " and ", k.shape(1));
  FT_CHECK(q.dtype() == k.dtype() && q.dtype() == v.dtype(), kPlace,
           "q, k and v must have one dtype, got ", q.dtype(), ", ", k.dtype(), ", ", v.dtype());
  FT_CHECK(mask_mode == "" || mask_mode == "causal" || mask_mode == "array", kPlace,
           "mask_mode must be \"\", \"causal\" or \"array\", got \"", mask_mode, "\"");
  FT_CHECK((mask_mode == "array") == mask.has_value(), kPlace,
           "a mask array goes with mask_mode \"array\" and only with it");
  if (mask)
    FT_CHECK(mask->ndim() <= 4, kPlace, "the mask must have at most 4 dimensions, got ",
             mask->shape());
}

// The mask (broadcastable to (B, Hq, L, K)) as an array broadcastable to the grouped scores
// (B, Hkv, groups, L, K).
mx::array grouped_mask(const mx::array& mask, int heads, int kv_heads, mx::Stream s) {
  mx::Shape shape = mask.shape();
  shape.insert(shape.begin(), 4 - shape.size(), 1);
  mx::array m = mx::reshape(mask, shape, s);
  if (shape[1] == 1) return mx::expand_dims(m, 2, s);
  FT_CHECK(shape[1] == heads, kPlace, "the mask's head axis must be 1 or ", heads, ", got ",
           shape[1]);
  return mx::reshape(m, {shape[0], kv_heads, heads / kv_heads, shape[2], shape[3]}, s);
}

}  // namespace

bool attention_uses_cpu_kernel(const mx::array& q, mx::StreamOrDevice s) {
  return cpu::masked_softmax_supported(q.dtype(), mx::to_stream(s));
}

mx::array attention(const mx::array& q, const mx::array& k, const mx::array& v, float scale,
                    const std::string& mask_mode, const std::optional<mx::array>& mask,
                    mx::StreamOrDevice s) {
  check_inputs(q, k, v, mask_mode, mask);
  const auto stream = mx::to_stream(s);
  if (!attention_uses_cpu_kernel(q, stream))
    return mx::fast::scaled_dot_product_attention(q, k, v, scale, mask_mode, mask, {}, false,
                                                  stream);
  const bool causal = mask_mode == "causal";
  if (!mask && k.shape(2) > 0 && cpu::fused_attention_supported(q.dtype(), q.shape(3), stream))
    return cpu::fused_attention(q, k, v, scale, causal, stream);
  const int batch = q.shape(0), heads = q.shape(1), length = q.shape(2), dim = q.shape(3);
  const int kv_heads = k.shape(1), keys = k.shape(2), groups = heads / kv_heads;
  // Grouped heads share their key head: stacking a group's queries along the length axis
  // makes one (groups * L, D) @ (D, K) product per key head, where broadcasting k would
  // multiply the same keys once per query head.
  mx::array scaled = mx::multiply(mx::array(scale, q.dtype()), q, stream);
  if (groups > 1) scaled = mx::reshape(scaled, {batch, kv_heads, groups * length, dim}, stream);
  mx::array scores = mx::matmul(scaled, mx::swapaxes(k, -1, -2, stream), stream);
  // (B, Hkv, groups, L, K): each row's query index is its index on the L axis.
  scores = mx::reshape(scores, {batch, kv_heads, groups, length, keys}, stream);
  std::optional<cpu::CausalMask> causal_mask;
  if (causal) causal_mask = cpu::CausalMask{length, std::max(0, keys - length)};
  std::optional<mx::array> grouped;
  if (mask) grouped = grouped_mask(*mask, heads, kv_heads, stream);
  mx::array p = cpu::masked_softmax(scores, causal_mask, grouped, stream);
  p = mx::reshape(p, {batch, kv_heads, groups * length, keys}, stream);
  mx::array out = mx::matmul(p, v, stream);  // (B, Hkv, groups * L, Dv)
  return mx::reshape(out, {batch, heads, length, v.shape(3)}, stream);
}

}  // namespace ft::kernels
