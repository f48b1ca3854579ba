// GGUF block quantizers (ggml_quants.h): ggml's reference quantizers, byte for byte.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <vector>

#include "ft/core/error.h"
#include "ft/io/ggml_blocks.h"
#include "ft/io/ggml_quants.h"

namespace ft::io::ggml {
namespace {

using namespace blocks;

void quantize_q8_0(const float* x, uint8_t* b) {
  float amax = 0.0f;
  for (int j = 0; j < kQK; ++j) amax = std::max(amax, std::fabs(x[j]));
  const float d = amax / 127.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  put_half(b, d);
  int8_t* qs = reinterpret_cast<int8_t*>(b + 2);
  for (int j = 0; j < kQK; ++j) qs[j] = static_cast<int8_t>(std::round(x[j] * id));
}

// The value of largest magnitude keeps its sign: d = that / -8, so it lands on q = 0.
void quantize_q4_0(const float* x, uint8_t* b) {
  float amax = 0.0f, max = 0.0f;
  for (int j = 0; j < kQK; ++j) {
    if (amax < std::fabs(x[j])) {
      amax = std::fabs(x[j]);
      max = x[j];
    }
  }
  const float d = max / -8.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  put_half(b, d);
  for (int j = 0; j < kQK / 2; ++j) {
    const int q0 = std::min(15, int(static_cast<int8_t>(x[j] * id + 8.5f)));
    const int q1 = std::min(15, int(static_cast<int8_t>(x[j + kQK / 2] * id + 8.5f)));
    b[2 + j] = static_cast<uint8_t>(q0 | q1 << 4);
  }
}

void quantize_q4_1(const float* x, uint8_t* b) {
  float min = FLT_MAX, max = -FLT_MAX;
  for (int j = 0; j < kQK; ++j) {
    min = std::min(min, x[j]);
    max = std::max(max, x[j]);
  }
  const float d = (max - min) / 15.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  put_half(b, d);
  put_half(b + 2, min);
  for (int j = 0; j < kQK / 2; ++j) {
    const int q0 = std::min(15, int(static_cast<int8_t>((x[j] - min) * id + 0.5f)));
    const int q1 = std::min(15, int(static_cast<int8_t>((x[j + kQK / 2] - min) * id + 0.5f)));
    b[4 + j] = static_cast<uint8_t>(q0 | q1 << 4);
  }
}

// Q5_0: Q4_0's rule with five bits: d = the value of largest magnitude / -16.
void quantize_q5_0(const float* x, uint8_t* b) {
  float amax = 0.0f, max = 0.0f;
  for (int j = 0; j < kQK; ++j) {
    if (amax < std::fabs(x[j])) {
      amax = std::fabs(x[j]);
      max = x[j];
    }
  }
  const float d = max / -16.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  put_half(b, d);
  uint32_t high = 0;
  for (int j = 0; j < kQK / 2; ++j) {
    const int q0 = std::min(31, int(static_cast<int8_t>(x[j] * id + 16.5f)));
    const int q1 = std::min(31, int(static_cast<int8_t>(x[j + kQK / 2] * id + 16.5f)));
    b[6 + j] = static_cast<uint8_t>((q0 & 0xF) | (q1 & 0xF) << 4);
    high |= uint32_t(q0 >> 4) << j | uint32_t(q1 >> 4) << (j + kQK / 2);
  }
  std::memcpy(b + 2, &high, 4);
}

// Q5_1: Q4_1's rule with five bits.
void quantize_q5_1(const float* x, uint8_t* b) {
  float min = FLT_MAX, max = -FLT_MAX;
  for (int j = 0; j < kQK; ++j) {
    min = std::min(min, x[j]);
    max = std::max(max, x[j]);
  }
  const float d = (max - min) / 31.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  put_half(b, d);
  put_half(b + 2, min);
  uint32_t high = 0;
  for (int j = 0; j < kQK / 2; ++j) {
    const int q0 = int(static_cast<int8_t>((x[j] - min) * id + 0.5f));
    const int q1 = int(static_cast<int8_t>((x[j + kQK / 2] - min) * id + 0.5f));
    b[8 + j] = static_cast<uint8_t>((q0 & 0xF) | (q1 & 0xF) << 4);
    high |= uint32_t((q0 & 0x10) >> 4) << j | uint32_t((q1 & 0x10) >> 4) << (j + kQK / 2);
  }
  std::memcpy(b + 4, &high, 4);
}

// Note [K-quant search]
// The K formats quantize each sub-block to a scale (and for Q4_K a minimum) found by a
// short search, then those scales to 6 or 8 bits against the super-block's, then the
// values again against the rounded scales, as ggml's reference quantizers do (the ones
// llama.cpp's quantizer runs without an importance matrix), so the bytes are theirs:
//   - Q4_K and Q5_K (asymmetric, 8 sub-blocks of 32, 4 or 5 bits): weights |x| +
//     rms(sub-block); the range [min(x, 0), max x] split in 15 (31) steps, then 21 trial
//     step counts 15 - 1 + 0.1 i (16 counts 31 - 0.5 + 0.1 i) over the range, each fitted by
//     weighted least squares (scale and minimum, the minimum held at or below 0), the one of
//     least weighted squared error kept.
//   - Q6_K (symmetric, 16 sub-blocks of 16, 6 bits from -32 to 31): the value of largest
//     magnitude on -32, weights x^2, then 18 trial steps (32 +- 0.1 i), each with the
//     least-squares scale, the best kept; the super-block scale puts the largest sub-block
//     scale on -128.
// Rounding is to nearest with ties to even (ggml's nearest_int).

int nearest_int(float v) {
  return static_cast<int>(std::nearbyint(v));
}

// One asymmetric sub-block: its scale (returned) and minimum (as the positive offset
// `offset`, x ~ scale q - offset), levels 0..nmax in q.
float fit_scale_and_min(int n, int nmax, float rmin, int steps, const float* x, const float* w,
                        uint8_t* q, float& offset) {
  float min = x[0], max = x[0], sum_w = w[0], sum_x = w[0] * x[0];
  for (int i = 1; i < n; ++i) {
    min = std::min(min, x[i]);
    max = std::max(max, x[i]);
    sum_w += w[i];
    sum_x += w[i] * x[i];
  }
  if (min > 0) min = 0;
  if (max == min) {
    std::fill(q, q + n, uint8_t(0));
    offset = -min;
    return 0.0f;
  }
  float iscale = float(nmax) / (max - min);
  float scale = 1.0f / iscale;
  float best = 0.0f;
  for (int i = 0; i < n; ++i) {
    q[i] = uint8_t(std::clamp(nearest_int(iscale * (x[i] - min)), 0, nmax));
    const float diff = scale * float(q[i]) + min - x[i];
    best += w[i] * diff * diff;
  }
  uint8_t trial[32];
  for (int step = 0; step <= steps; ++step) {
    iscale = (rmin + 0.1f * float(step) + float(nmax)) / (max - min);
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (int i = 0; i < n; ++i) {
      const int l = std::clamp(nearest_int(iscale * (x[i] - min)), 0, nmax);
      trial[i] = uint8_t(l);
      sum_l += w[i] * float(l);
      sum_l2 += w[i] * float(l) * float(l);
      sum_xl += w[i] * float(l) * x[i];
    }
    const float det = sum_w * sum_l2 - sum_l * sum_l;
    if (det <= 0) continue;
    float this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
    float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
    if (this_min > 0) {
      this_min = 0;
      this_scale = sum_xl / sum_l2;
    }
    float error = 0.0f;
    for (int i = 0; i < n; ++i) {
      const float diff = this_scale * float(trial[i]) + this_min - x[i];
      error += w[i] * diff * diff;
    }
    if (error < best) {
      std::copy(trial, trial + n, q);
      best = error;
      scale = this_scale;
      min = this_min;
    }
  }
  offset = -min;
  return scale;
}

// One symmetric sub-block of Q6_K: its scale, levels -nmax..nmax-1 stored in q as 0..2 nmax-1.
float fit_symmetric_scale(int n, int nmax, const float* x, uint8_t* q) {
  float max = 0.0f, amax = 0.0f;
  for (int i = 0; i < n; ++i) {
    if (std::fabs(x[i]) > amax) {
      amax = std::fabs(x[i]);
      max = x[i];
    }
  }
  if (amax < 1e-15f) {
    std::fill(q, q + n, uint8_t(0));
    return 0.0f;
  }
  auto level = [&](float iscale, int i) {
    return std::clamp(nearest_int(iscale * x[i]), -nmax, nmax - 1);
  };
  float iscale = -float(nmax) / max;
  float sum_lx = 0, sum_l2 = 0;
  for (int i = 0; i < n; ++i) {
    const int l = level(iscale, i);
    q[i] = uint8_t(l + nmax);
    const float w = x[i] * x[i];
    sum_lx += w * x[i] * float(l);
    sum_l2 += w * float(l) * float(l);
  }
  float scale = sum_l2 != 0 ? sum_lx / sum_l2 : 0.0f;
  float best = scale * sum_lx;
  for (int step = -9; step <= 9; ++step) {
    if (step == 0) continue;
    iscale = -(float(nmax) + 0.1f * float(step)) / max;
    sum_lx = 0;
    sum_l2 = 0;
    for (int i = 0; i < n; ++i) {
      const int l = level(iscale, i);
      const float w = x[i] * x[i];
      sum_lx += w * x[i] * float(l);
      sum_l2 += w * float(l) * float(l);
    }
    if (sum_l2 > 0 && sum_lx * sum_lx > best * sum_l2) {
      for (int i = 0; i < n; ++i) q[i] = uint8_t(nmax + level(iscale, i));
      scale = sum_lx / sum_l2;
      best = scale * sum_lx;
    }
  }
  return scale;
}

// Q4_K and Q5_K (layouts: dequantize_q4_k, dequantize_q5_k).
void quantize_k_asymmetric(const float* x, uint8_t* b, bool five_bits) {
  const int nmax = five_bits ? 31 : 15;
  uint8_t levels[kQKK];
  float weights[32], scales[8], offsets[8];
  float max_scale = 0.0f, max_offset = 0.0f;
  for (int j = 0; j < 8; ++j) {
    const float* xj = x + 32 * j;
    float sum_x2 = 0.0f;
    for (int l = 0; l < 32; ++l) sum_x2 += xj[l] * xj[l];
    const float rms = std::sqrt(sum_x2 / 32.0f);
    for (int l = 0; l < 32; ++l) weights[l] = rms + std::fabs(xj[l]);
    scales[j] =
        five_bits
            ? fit_scale_and_min(32, nmax, -0.5f, 15, xj, weights, levels + 32 * j, offsets[j])
            : fit_scale_and_min(32, nmax, -1.0f, 20, xj, weights, levels + 32 * j, offsets[j]);
    max_scale = std::max(max_scale, scales[j]);
    max_offset = std::max(max_offset, offsets[j]);
  }
  const float inv_scale = max_scale > 0 ? 63.0f / max_scale : 0.0f;
  const float inv_offset = max_offset > 0 ? 63.0f / max_offset : 0.0f;
  uint8_t* packed = b + 4;
  std::fill(packed, packed + 12, uint8_t(0));
  for (int j = 0; j < 8; ++j) {
    const int ls = std::min(63, nearest_int(inv_scale * scales[j]));
    const int lm = std::min(63, nearest_int(inv_offset * offsets[j]));
    if (j < 4) {
      packed[j] = uint8_t(ls);
      packed[j + 4] = uint8_t(lm);
    } else {
      packed[j + 4] = uint8_t((ls & 0xF) | (lm & 0xF) << 4);
      packed[j - 4] |= uint8_t((ls >> 4) << 6);
      packed[j] |= uint8_t((lm >> 4) << 6);
    }
  }
  put_half(b, max_scale / 63.0f);
  put_half(b + 2, max_offset / 63.0f);
  const float d = half_to_float(b), dmin = half_to_float(b + 2);
  for (int j = 0; j < 8; ++j) {
    int sc, m;
    scale_and_min(j, packed, sc, m);
    const float dj = d * float(sc);
    if (dj == 0.0f) continue;
    const float mj = dmin * float(m);
    for (int l = 0; l < 32; ++l)
      levels[32 * j + l] = uint8_t(std::clamp(nearest_int((x[32 * j + l] + mj) / dj), 0, nmax));
  }
  // Pairs of sub-blocks share 32 bytes of nibbles, the first in the low halves; Q5_K's fifth
  // bits of pair k are bits 2k and 2k + 1 of 32 bytes before them.
  uint8_t* high = b + 16;
  uint8_t* q = b + (five_bits ? 48 : 16);
  if (five_bits) std::fill(high, high + 32, uint8_t(0));
  for (int j = 0, pair = 0; j < kQKK; j += 64, q += 32, ++pair) {
    for (int l = 0; l < 32; ++l) {
      const uint8_t lo = levels[j + l], hi = levels[j + l + 32];
      q[l] = uint8_t((lo & 0xF) | (hi & 0xF) << 4);
      if (five_bits) high[l] |= uint8_t((lo >> 4) << (2 * pair) | (hi >> 4) << (2 * pair + 1));
    }
  }
}

// Q6_K (layout: dequantize_q6_k).
void quantize_q6_k(const float* x, uint8_t* b) {
  uint8_t levels[kQKK];
  float scales[16];
  float max_scale = 0.0f, max_abs = 0.0f;
  for (int j = 0; j < 16; ++j) {
    scales[j] = fit_symmetric_scale(16, 32, x + 16 * j, levels + 16 * j);
    if (std::fabs(scales[j]) > max_abs) {
      max_abs = std::fabs(scales[j]);
      max_scale = scales[j];
    }
  }
  if (max_abs < 1e-15f) {
    std::fill(b, b + 210, uint8_t(0));
    return;
  }
  const float iscale = -128.0f / max_scale;
  put_half(b + 208, 1.0f / iscale);
  int8_t* sc = reinterpret_cast<int8_t*>(b + 192);
  for (int j = 0; j < 16; ++j) sc[j] = int8_t(std::min(127, nearest_int(iscale * scales[j])));
  const float d = half_to_float(b + 208);
  for (int j = 0; j < 16; ++j) {
    const float dj = d * float(sc[j]);
    if (dj == 0.0f) continue;
    for (int l = 0; l < 16; ++l)
      levels[16 * j + l] = uint8_t(std::clamp(nearest_int(x[16 * j + l] / dj), -32, 31) + 32);
  }
  uint8_t* ql = b;
  uint8_t* qh = b + 128;
  for (int j = 0; j < kQKK; j += 128, ql += 64, qh += 32) {
    for (int l = 0; l < 32; ++l) {
      const uint8_t* L = levels + j + l;
      ql[l] = uint8_t((L[0] & 0xF) | (L[64] & 0xF) << 4);
      ql[l + 32] = uint8_t((L[32] & 0xF) | (L[96] & 0xF) << 4);
      qh[l] = uint8_t(L[0] >> 4 | (L[32] >> 4) << 2 | (L[64] >> 4) << 4 | (L[96] >> 4) << 6);
    }
  }
}

}  // namespace

bool can_quantize(Type type) {
  return type == Type::Q8_0 || type == Type::Q4_0 || type == Type::Q4_1 || type == Type::Q5_0 ||
         type == Type::Q5_1 || type == Type::Q4_K || type == Type::Q5_K || type == Type::Q6_K;
}

std::vector<uint8_t> quantize(Type type, const float* x, size_t n) {
  const TypeInfo info = checked_info(type);
  FT_CHECK(can_quantize(type), kPlace, "cannot quantize to ", info.name,
           " (ft writes Q8_0, Q5_0, Q5_1, Q4_0, Q4_1, Q4_K, Q5_K and Q6_K)");
  const size_t block = size_t(info.block);
  FT_CHECK(n % block == 0, kPlace, n, " values are not whole ", info.name, " blocks of ", block);
  std::vector<uint8_t> out(n / block * size_t(info.bytes));
  for (size_t i = 0; i < n / block; ++i) {
    uint8_t* b = out.data() + i * size_t(info.bytes);
    const float* xi = x + i * block;
    switch (type) {
      case Type::Q8_0:
        quantize_q8_0(xi, b);
        break;
      case Type::Q5_0:
        quantize_q5_0(xi, b);
        break;
      case Type::Q4_0:
        quantize_q4_0(xi, b);
        break;
      case Type::Q4_1:
        quantize_q4_1(xi, b);
        break;
      case Type::Q5_1:
        quantize_q5_1(xi, b);
        break;
      case Type::Q4_K:
        quantize_k_asymmetric(xi, b, false);
        break;
      case Type::Q5_K:
        quantize_k_asymmetric(xi, b, true);
        break;
      case Type::Q6_K:
        quantize_q6_k(xi, b);
        break;
      default:
        FT_ASSERT(false);
    }
  }
  return out;
}

}  // namespace ft::io::ggml
