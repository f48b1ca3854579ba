#include <gtest/gtest.h>

#include <mlx/ops.h>
#include <mlx/random.h>

#include "ft/core/error.h"
#include "ft/core/random.h"

namespace mx = mlx::core;

TEST(Rng, SameSeedSameDraws) {
  ft::Rng a(7), b(7), c(8);
  auto x = mx::random::normal({8}, mx::float32, 0, 1, a.next());
  auto y = mx::random::normal({8}, mx::float32, 0, 1, b.next());
  auto z = mx::random::normal({8}, mx::float32, 0, 1, c.next());
  EXPECT_TRUE(mx::array_equal(x, y).item<bool>());
  EXPECT_FALSE(mx::array_equal(x, z).item<bool>());
}

TEST(Rng, StateRestoresTheSequence) {
  ft::Rng a(3);
  a.next();
  auto saved = a.state();
  auto k1 = a.next();
  auto b = ft::Rng::from_state(saved);
  EXPECT_TRUE(mx::array_equal(k1, b.next()).item<bool>());
  EXPECT_THROW(ft::Rng::from_state(mx::zeros({3}, mx::uint32)), ft::Error);
}
