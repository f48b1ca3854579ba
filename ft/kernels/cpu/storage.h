// How the CPU kernels read and write each floating storage dtype: all math runs in float32.
#pragma once

#include <cstdint>
#include <limits>

#include <mlx/array.h>
#include <mlx/types/half_types.h>  // defines: mx::float16_t

#include "ft/kernels/cpu/vec_math.h"

namespace ft::kernels::cpu {

namespace mx = mlx::core;

struct F32Storage {
  using type = float;
  static float load(float v) { return v; }
  static float store(float v) { return v; }
};

// bfloat16 as raw bits, so that widening and narrowing vectorise.
struct Bf16Storage {
  using type = uint16_t;
  static float load(uint16_t v) { return bf16_to_float(v); }
  static uint16_t store(float v) { return float_to_bf16(v); }
};

// float16 through MLX's conversions (scalar on x86: a rare dtype on the CPU).
struct F16Storage {
  using type = mx::float16_t;
  static float load(mx::float16_t v) { return static_cast<float>(v); }
  static mx::float16_t store(float v) { return static_cast<mx::float16_t>(v); }
};

// Calls fn(Storage{}) for a float32, bfloat16 or float16 dtype; returns false for others.
template <class Fn>
bool dispatch_storage(mx::Dtype dtype, Fn&& fn) {
  if (dtype == mx::float32) return fn(F32Storage{}), true;
  if (dtype == mx::bfloat16) return fn(Bf16Storage{}), true;
  if (dtype == mx::float16) return fn(F16Storage{}), true;
  return false;
}

// Row reductions keep this many partial results, combined in a fixed order, so the
// compiler vectorises them and every run gives the same bits.
constexpr int kLanes = 16;

// The maximum of x[0..n) read through storage S.
template <class S>
inline float row_max(const typename S::type* x, int64_t n) {
  float lanes[kLanes];
  for (int k = 0; k < kLanes; ++k) lanes[k] = -std::numeric_limits<float>::infinity();
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes)
    for (int k = 0; k < kLanes; ++k)
      lanes[k] = select(S::load(x[j + k]) > lanes[k], S::load(x[j + k]), lanes[k]);
  for (; j < n; ++j) lanes[0] = select(S::load(x[j]) > lanes[0], S::load(x[j]), lanes[0]);
  float result = lanes[0];
  for (int k = 1; k < kLanes; ++k) result = select(lanes[k] > result, lanes[k], result);
  return result;
}

}  // namespace ft::kernels::cpu
