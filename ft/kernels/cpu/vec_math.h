// Scalar math written so that GCC and Clang vectorise the loops that call it: no libm calls,
// no float-to-int conversions that can trap, selects instead of branches. MLX's CPU backend
// evaluates exp through libm one value at a time on x86; these run 8 or 16 lanes at once.
#pragma once

#include <bit>
#include <cstdint>

// Compiles a function once per x86 level (AVX-512, AVX2 with FMA, baseline) and picks one at
// load time; elsewhere (aarch64, macOS, other compilers) one plain build.
#if defined(__x86_64__) && defined(__linux__) && defined(__GNUC__) && !defined(__clang__)
#define FT_CPU_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define FT_CPU_CLONES
#endif

namespace ft::kernels::cpu {

// condition ? a : b through bit masks: GCC if-converts this for AVX2, where it leaves a plain
// float ?: as a branch (and so does not vectorise the loop).
inline float select(bool condition, float a, float b) {
  uint32_t mask = 0u - static_cast<uint32_t>(condition);
  return std::bit_cast<float>((std::bit_cast<uint32_t>(a) & mask) |
                              (std::bit_cast<uint32_t>(b) & ~mask));
}

// exp(x) in f32 within about 2 ulp for every float: range reduction x = n ln2 + r with
// |r| <= ln2 / 2, a degree-7 Taylor polynomial for exp(r) (truncation error below 1e-8
// relative), and 2^n applied as two factors so that results down to the subnormals and up
// to FLT_MAX stay exact in the exponent. exp(-inf) = 0, exp(+inf) = inf, exp(NaN) = NaN.
inline float exp_approx(float x) {
  constexpr float kHi = 88.72283905206835f;  // log(FLT_MAX)
  constexpr float kLo = -103.97208f;         // below: exp(x) rounds to 0
  constexpr float kLog2e = 1.44269504088896341f;
  constexpr float kLn2Hi = 0.693145751953125f;  // ln 2 split: kLn2Hi * n is exact
  constexpr float kLn2Lo = 1.428606765330187e-06f;
  constexpr float kRound = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  float xc = select(x > kHi, kHi, x);
  xc = select(xc < kLo, kLo, xc);
  float shifted = xc * kLog2e + kRound;  // n sits in the low mantissa bits
  float n = shifted - kRound;
  int32_t ni = static_cast<int32_t>(std::bit_cast<uint32_t>(shifted) -
                                    std::bit_cast<uint32_t>(kRound));  // n in [-150, 128]
  float r = (xc - n * kLn2Hi) - n * kLn2Lo;
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  int32_t half = ni >> 1;  // 2^n = 2^half * 2^(n - half), each factor a normal float
  float scale1 = std::bit_cast<float>(static_cast<uint32_t>(half + 127) << 23);
  float scale2 = std::bit_cast<float>(static_cast<uint32_t>(ni - half + 127) << 23);
  float result = p * scale1 * scale2;
  result = select(x > kHi, std::bit_cast<float>(0x7f800000u), result);
  return select(x < kLo, 0.0f, result);
}

// bfloat16 storage as raw bits: widening is a shift, narrowing rounds to nearest even.
inline float bf16_to_float(uint16_t bits) {
  return std::bit_cast<float>(static_cast<uint32_t>(bits) << 16);
}
inline uint16_t float_to_bf16(float value) {
  uint32_t u = std::bit_cast<uint32_t>(value);
  uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  bool nan = (u & 0x7fffffffu) > 0x7f800000u;
  return static_cast<uint16_t>(nan ? ((u >> 16) | 0x40u) : rounded);
}

}  // namespace ft::kernels::cpu
