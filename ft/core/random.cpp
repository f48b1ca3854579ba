#include "ft/core/random.h"

#include <mlx/ops.h>
#include <mlx/random.h>
#include <mlx/transforms.h>

#include "ft/core/error.h"

namespace ft {

Rng::Rng(uint64_t seed) : key_(mx::random::key(seed)) {}

Rng Rng::from_state(const mx::array& state) {
  FT_CHECK(state.dtype() == mx::uint32 && state.ndim() == 1 && state.size() == 2, "random",
           "an Rng state is a (2,) uint32 array");
  return Rng(state);
}

mx::array Rng::next() {
  auto [next_state, key] = mx::random::split(key_);
  mx::eval(next_state, key);
  key_ = next_state;
  return key;
}

Rng seed_everything(uint64_t seed) {
  mx::random::seed(seed);
  return Rng(seed);
}

}  // namespace ft
