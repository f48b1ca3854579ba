// What the block formats' dequantizers (ggml_quants.cpp) and quantizers
// (ggml_quantize.cpp) share: block sizes, float16 fields, Q4_K/Q5_K's packed scales.
// Internal to ft/io.
#pragma once

#include <cstdint>
#include <cstring>

#include <mlx/types/half_types.h>  // defines: float16_t

#include "ft/io/ggml_quants.h"

namespace ft::io::ggml::blocks {

namespace mx = mlx::core;

constexpr const char* kPlace = "gguf";
constexpr int kQK = 32;    // values per block of the 32-value formats
constexpr int kQKK = 256;  // values per super-block of the K formats

inline float half_to_float(const uint8_t* p) {
  mx::float16_t h;
  std::memcpy(&h, p, 2);
  return static_cast<float>(h);
}

inline void put_half(uint8_t* p, float value) {
  mx::float16_t h = static_cast<mx::float16_t>(value);
  std::memcpy(p, &h, 2);
}

// Q4_K and Q5_K keep eight 6-bit scales and eight 6-bit minimums in 12 bytes: the first
// four of each in the low 6 bits of bytes 0-3 and 4-7, the last four split between the
// nibbles of bytes 8-11 and the top two bits of bytes 0-7.
inline void scale_and_min(int j, const uint8_t* q, int& scale, int& min) {
  if (j < 4) {
    scale = q[j] & 63;
    min = q[j + 4] & 63;
  } else {
    scale = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    min = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

// The type's sizes; throws ft::Error for a number ft does not size.
TypeInfo checked_info(Type type);

}  // namespace ft::io::ggml::blocks
