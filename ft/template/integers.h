// Integer arithmetic of the template language: Python's result wherever it fits in 64
// bits, and nullopt where Python would grow a big integer, which ft's templates do not
// have (the caller turns that into an error instead of a silent wrap-around).
// Internal to ft/template.
#pragma once

#include <cstdint>
#include <optional>

namespace ft::jinja {

inline std::optional<int64_t> int_add(int64_t a, int64_t b) {
  int64_t r;
  if (__builtin_add_overflow(a, b, &r)) return std::nullopt;
  return r;
}

inline std::optional<int64_t> int_sub(int64_t a, int64_t b) {
  int64_t r;
  if (__builtin_sub_overflow(a, b, &r)) return std::nullopt;
  return r;
}

inline std::optional<int64_t> int_mul(int64_t a, int64_t b) {
  int64_t r;
  if (__builtin_mul_overflow(a, b, &r)) return std::nullopt;
  return r;
}

inline std::optional<int64_t> int_neg(int64_t a) {
  return int_sub(0, a);
}

inline std::optional<int64_t> int_abs(int64_t a) {
  return a < 0 ? int_neg(a) : a;
}

// Python's a // b (rounded towards negative infinity); b must not be 0. Only
// INT64_MIN // -1 leaves 64 bits.
inline std::optional<int64_t> int_floor_div(int64_t a, int64_t b) {
  if (b == -1) return int_neg(a);
  int64_t q = a / b;
  if (a % b != 0 && ((a < 0) != (b < 0))) --q;
  return q;
}

// Python's a % b (the sign of b); b must not be 0. Always fits.
inline int64_t int_mod(int64_t a, int64_t b) {
  if (b == -1) return 0;  // a % -1 would trap for INT64_MIN in C++
  int64_t r = a % b;
  if (r != 0 && ((r < 0) != (b < 0))) r += b;
  return r;
}

// a ** b for b >= 0, by squaring: at most 63 squarings whatever b is.
inline std::optional<int64_t> int_pow(int64_t a, int64_t b) {
  int64_t result = 1;
  int64_t base = a;
  while (true) {
    if (b & 1) {
      auto r = int_mul(result, base);
      if (!r) return std::nullopt;
      result = *r;
    }
    b >>= 1;
    if (b == 0) return result;
    // 0, 1 and -1 stay small for any exponent; others overflow within 63 squarings.
    auto squared = int_mul(base, base);
    if (!squared) return std::nullopt;
    base = *squared;
  }
}

}  // namespace ft::jinja
