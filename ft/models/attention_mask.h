// Attention masks for packed rows: several samples share a row, and no token may
// attend to a token of another sample.
#pragma once

#include <mlx/array.h>

namespace ft::models {

namespace mx = mlx::core;

// segment_ids (batch, length) int: 1, 2, ... per sample, 0 for padding.
// Returns (batch, 1, length, length) bool: query i sees key j when j <= i and both
// belong to the same sample. A padding position sees only itself, so its softmax
// stays finite (its loss is ignored anyway).
//
// Positions need not restart per sample: rotary embeddings make scores depend only on
// i - j, so global positions inside a row give each sample the same attention as
// running it alone.
mx::array segment_causal_mask(const mx::array& segment_ids);

}  // namespace ft::models
