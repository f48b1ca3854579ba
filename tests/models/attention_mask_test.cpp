#include <gtest/gtest.h>

#include <mlx/ops.h>

#include "ft/core/error.h"
#include "ft/models/attention_mask.h"

namespace mx = mlx::core;

TEST(SegmentCausalMask, SamplesSeeOnlyThemselvesAndTheirPast) {
  // One row: sample 1 (3 tokens), sample 2 (2 tokens), one padding token.
  std::vector<int32_t> ids = {1, 1, 1, 2, 2, 0};
  mx::array segments(ids.data(), {1, 6}, mx::int32);
  mx::array mask = mx::astype(ft::models::segment_causal_mask(segments), mx::int32);
  ASSERT_EQ(mask.shape(), (mx::Shape{1, 1, 6, 6}));
  // Written out by hand: rows are queries, columns keys.
  std::vector<int32_t> expected = {
      1, 0, 0, 0, 0, 0,  //
      1, 1, 0, 0, 0, 0,  //
      1, 1, 1, 0, 0, 0,  //
      0, 0, 0, 1, 0, 0,  //
      0, 0, 0, 1, 1, 0,  //
      0, 0, 0, 0, 0, 1,  // padding sees itself only
  };
  mx::array want(expected.data(), {1, 1, 6, 6}, mx::int32);
  EXPECT_TRUE(mx::array_equal(mask, want).item<bool>());
  EXPECT_THROW(ft::models::segment_causal_mask(mx::zeros({6}, mx::int32)), ft::Error);
}
