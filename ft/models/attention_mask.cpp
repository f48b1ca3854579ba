#include "ft/models/attention_mask.h"

#include <mlx/ops.h>

#include "ft/core/error.h"

namespace ft::models {

mx::array segment_causal_mask(const mx::array& segment_ids) {
  FT_CHECK(segment_ids.ndim() == 2, "attention", "segment ids must be (batch, length), got ",
           segment_ids.ndim(), "-D");
  int length = segment_ids.shape(1);
  mx::array query = mx::expand_dims(segment_ids, {1, 3});  // (B, 1, L, 1)
  mx::array key = mx::expand_dims(segment_ids, {1, 2});    // (B, 1, 1, L)
  mx::array position = mx::arange(length, mx::int32);
  mx::array causal = mx::expand_dims(position, 1) >= mx::expand_dims(position, 0);  // (L, L)
  mx::array diagonal = mx::expand_dims(position, 1) == mx::expand_dims(position, 0);
  mx::array same = mx::logical_and(mx::equal(query, key), query != 0);
  return mx::logical_or(mx::logical_and(same, causal), diagonal);
}

}  // namespace ft::models
