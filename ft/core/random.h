// Seeding with explicit random keys.
//
// Every random draw in ft takes a key from an Rng, so the same seed gives the same
// run, and an Rng's state saves to and restores from a checkpoint.
#pragma once

#include <cstdint>

#include <mlx/array.h>

namespace ft {

namespace mx = mlx::core;

class Rng {
 public:
  explicit Rng(uint64_t seed);
  // Restores from state() of another Rng.
  static Rng from_state(const mx::array& state);

  // A fresh key; advances the state.
  mx::array next();
  // The state as a uint32 array of shape (2,), for checkpoints.
  mx::array state() const { return key_; }

 private:
  explicit Rng(mx::array key) : key_(std::move(key)) {}
  mx::array key_;  // (2,) uint32
};

// Seeds MLX's global generator too, for code that draws without a key.
Rng seed_everything(uint64_t seed);

}  // namespace ft
