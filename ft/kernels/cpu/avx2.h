// What ft's hand-written AVX2 kernels share (cpu/head_cross_entropy.cpp,
// cpu/fused_attention.cpp): the build switch, the target attribute, the run-time check, an
// 8-lane exp and scratch memory from MLX's allocator.
#pragma once

#include <cstdint>
#include <limits>

#include <mlx/allocator.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define FT_AVX2_KERNELS 1
// Compiles one function for AVX2 with FMA; callers check avx2_supported() first.
#define FT_AVX2 __attribute__((target("avx2,fma")))
#else
#define FT_AVX2_KERNELS 0
#endif

namespace ft::kernels::cpu {

namespace mx = mlx::core;

// Whether this processor runs the AVX2 kernels (read once).
inline bool avx2_supported() {
#if FT_AVX2_KERNELS
  static const bool supported = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return supported;
#else
  return false;
#endif
}

// Scratch from MLX's allocator, so that its memory counters (ft bench's peak) include it,
// aligned to 64 bytes.
class Floats {
 public:
  explicit Floats(int64_t n) : data_(mx::allocator::malloc(n * sizeof(float) + 64)) {
    auto address = reinterpret_cast<uintptr_t>(data_.buffer().raw_ptr());
    aligned_ = reinterpret_cast<float*>((address + 63) / 64 * 64);
  }
  float* get() const { return aligned_; }

 private:
  mx::allocator::Data data_;
  float* aligned_;
};

#if FT_AVX2_KERNELS

// The shared core of exp8 and exp8_normal: x (already clamped) = n ln2 + r with |r| <= ln2 / 2;
// returns the polynomial for exp(r) and sets n.
FT_AVX2 inline __m256 exp8_reduced(__m256 x, __m256i& n) {
  const __m256 round = _mm256_set1_ps(12582912.0f);
  const __m256 shifted = _mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), round);
  const __m256 nf = _mm256_sub_ps(shifted, round);
  n = _mm256_sub_epi32(_mm256_castps_si256(shifted), _mm256_castps_si256(round));
  __m256 r = _mm256_fnmadd_ps(nf, _mm256_set1_ps(0.693145751953125f), x);
  r = _mm256_fnmadd_ps(nf, _mm256_set1_ps(1.428606765330187e-06f), r);
  __m256 p = _mm256_set1_ps(1.0f / 5040.0f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  return _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
}

// exp(x) as cpu::exp_approx (vec_math.h), 8 lanes at once.
FT_AVX2 inline __m256 exp8(__m256 x) {
  const __m256 hi = _mm256_set1_ps(88.72283905206835f);
  const __m256 lo = _mm256_set1_ps(-103.97208f);
  const __m256 above = _mm256_cmp_ps(x, hi, _CMP_GT_OQ);
  const __m256 below = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
  __m256 xc = _mm256_blendv_ps(x, hi, above);
  xc = _mm256_blendv_ps(xc, lo, below);
  __m256i ni;
  const __m256 p = exp8_reduced(xc, ni);
  const __m256i half = _mm256_srai_epi32(ni, 1);
  const __m256i bias = _mm256_set1_epi32(127);
  const __m256 scale1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(half, bias), 23));
  const __m256 scale2 = _mm256_castsi256_ps(
      _mm256_slli_epi32(_mm256_add_epi32(_mm256_sub_epi32(ni, half), bias), 23));
  __m256 result = _mm256_mul_ps(_mm256_mul_ps(p, scale1), scale2);
  result = _mm256_blendv_ps(result, _mm256_set1_ps(std::numeric_limits<float>::infinity()), above);
  return _mm256_blendv_ps(result, _mm256_setzero_ps(), below);
}

// exp8 for arguments up to 88 (not checked), as softmax's x - max: the same bits wherever
// exp8's result is at least FLT_MIN, and 0 below that, where exp8 gives subnormals (x <
// log(FLT_MIN)). NaN stays NaN. Half the instructions past the polynomial: one factor 2^n,
// a normal float for n in [-126, 127].
FT_AVX2 inline __m256 exp8_normal(__m256 x) {
  const __m256 lo = _mm256_set1_ps(-87.33654475f);  // log(FLT_MIN)
  const __m256 below = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
  __m256i ni;
  const __m256 p = exp8_reduced(_mm256_max_ps(lo, x), ni);  // max(lo, NaN) is NaN
  const __m256 scale =
      _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(ni, _mm256_set1_epi32(127)), 23));
  return _mm256_andnot_ps(below, _mm256_mul_ps(p, scale));
}

#endif  // FT_AVX2_KERNELS

}  // namespace ft::kernels::cpu
