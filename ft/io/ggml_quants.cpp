#include "ft/io/ggml_quants.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>

#include <mlx/ops.h>  // defines: array from a buffer, astype

#include "ft/core/error.h"

namespace ft::io::ggml {
namespace {

constexpr const char* kPlace = "gguf";
constexpr int kQK = 32;    // values per block of the 32-value formats
constexpr int kQKK = 256;  // values per super-block of the K formats

// Note [Nibble order]
// The 32-value formats keep value j of a block in the low half of byte j and value j + 16 in
// its high half, not the neighbours j and j + 1 of MLX's packing (value i at bits 4 (i % 8)
// of 32-bit word i / 8). to_affine repacks; dequantize reads them in ggml's order.

constexpr TypeInfo kTypes[] = {
    {Type::F32, "F32", 1, 4},       {Type::F16, "F16", 1, 2},       {Type::Q4_0, "Q4_0", 32, 18},
    {Type::Q4_1, "Q4_1", 32, 20},   {Type::Q5_0, "Q5_0", 32, 22},   {Type::Q5_1, "Q5_1", 32, 24},
    {Type::Q8_0, "Q8_0", 32, 34},   {Type::Q8_1, "Q8_1", 32, 36},   {Type::Q2_K, "Q2_K", 256, 84},
    {Type::Q3_K, "Q3_K", 256, 110}, {Type::Q4_K, "Q4_K", 256, 144}, {Type::Q5_K, "Q5_K", 256, 176},
    {Type::Q6_K, "Q6_K", 256, 210}, {Type::Q8_K, "Q8_K", 256, 292}, {Type::I8, "I8", 1, 1},
    {Type::I16, "I16", 1, 2},       {Type::I32, "I32", 1, 4},       {Type::I64, "I64", 1, 8},
    {Type::F64, "F64", 1, 8},       {Type::BF16, "BF16", 1, 2},
};

float half_to_float(const uint8_t* p) {
  mx::float16_t h;
  std::memcpy(&h, p, 2);
  return static_cast<float>(h);
}

void put_half(uint8_t* p, float value) {
  mx::float16_t h = static_cast<mx::float16_t>(value);
  std::memcpy(p, &h, 2);
}

float bf16_to_float(const uint8_t* p) {
  uint32_t bits = uint32_t(p[0]) << 16 | uint32_t(p[1]) << 24;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// Q4_K and Q5_K keep eight 6-bit scales and eight 6-bit minimums in 12 bytes: the first
// four of each in the low 6 bits of bytes 0-3 and 4-7, the last four split between the
// nibbles of bytes 8-11 and the top two bits of bytes 0-7.
void scale_and_min(int j, const uint8_t* q, int& scale, int& min) {
  if (j < 4) {
    scale = q[j] & 63;
    min = q[j + 4] & 63;
  } else {
    scale = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    min = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

void dequantize_q4_0(const uint8_t* b, float* y) {
  const float d = half_to_float(b);
  const uint8_t* qs = b + 2;
  for (int j = 0; j < kQK / 2; ++j) {
    y[j] = float((qs[j] & 0xF) - 8) * d;
    y[j + kQK / 2] = float((qs[j] >> 4) - 8) * d;
  }
}

void dequantize_q4_1(const uint8_t* b, float* y) {
  const float d = half_to_float(b), m = half_to_float(b + 2);
  const uint8_t* qs = b + 4;
  for (int j = 0; j < kQK / 2; ++j) {
    y[j] = float(qs[j] & 0xF) * d + m;
    y[j + kQK / 2] = float(qs[j] >> 4) * d + m;
  }
}

// Q5_0 and Q5_1: a 32-bit word of fifth bits, bit j for value j, then Q4's nibbles.
void dequantize_q5(const uint8_t* b, float* y, bool with_min) {
  const float d = half_to_float(b), m = with_min ? half_to_float(b + 2) : 0.0f;
  const uint8_t* rest = b + (with_min ? 4 : 2);
  uint32_t high;
  std::memcpy(&high, rest, 4);
  const uint8_t* qs = rest + 4;
  const int offset = with_min ? 0 : 16;
  for (int j = 0; j < kQK / 2; ++j) {
    const int q0 = (qs[j] & 0xF) | int((high >> j) & 1) << 4;
    const int q1 = (qs[j] >> 4) | int((high >> (j + 16)) & 1) << 4;
    if (with_min) {
      y[j] = float(q0) * d + m;
      y[j + kQK / 2] = float(q1) * d + m;
    } else {
      y[j] = float(q0 - offset) * d;
      y[j + kQK / 2] = float(q1 - offset) * d;
    }
  }
}

void dequantize_q8_0(const uint8_t* b, float* y) {
  const float d = half_to_float(b);
  const int8_t* qs = reinterpret_cast<const int8_t*>(b + 2);
  for (int j = 0; j < kQK; ++j) y[j] = float(qs[j]) * d;
}

// Q2_K: 16 scale bytes (scale in the low nibble, minimum in the high one) for sub-blocks of
// 16, 64 bytes of 2-bit values, then f16 d and dmin.
void dequantize_q2_k(const uint8_t* b, float* y) {
  const uint8_t* scales = b;
  const uint8_t* q = b + 16;
  const float d = half_to_float(b + 80), dmin = half_to_float(b + 82);
  int is = 0;
  for (int n = 0; n < kQKK; n += 128) {
    for (int shift = 0; shift < 8; shift += 2) {
      for (int half = 0; half < 2; ++half) {
        const uint8_t sc = scales[is++];
        const float dl = d * float(sc & 0xF), ml = dmin * float(sc >> 4);
        for (int l = 0; l < 16; ++l) *y++ = dl * float((q[l + 16 * half] >> shift) & 3) - ml;
      }
    }
    q += 32;
  }
}

// Q4_K: f16 d and dmin, 12 bytes of scales and minimums, 128 bytes of nibbles: each 32 bytes
// hold two sub-blocks of 32 values, the first in the low nibbles.
void dequantize_q4_k(const uint8_t* b, float* y) {
  const float d = half_to_float(b), dmin = half_to_float(b + 2);
  const uint8_t* scales = b + 4;
  const uint8_t* q = b + 16;
  for (int is = 0; is < 8; is += 2) {
    int sc, m;
    scale_and_min(is, scales, sc, m);
    const float d1 = d * float(sc), m1 = dmin * float(m);
    scale_and_min(is + 1, scales, sc, m);
    const float d2 = d * float(sc), m2 = dmin * float(m);
    for (int l = 0; l < 32; ++l) *y++ = d1 * float(q[l] & 0xF) - m1;
    for (int l = 0; l < 32; ++l) *y++ = d2 * float(q[l] >> 4) - m2;
    q += 32;
  }
}

// Q5_K: Q4_K's layout with 32 bytes of fifth bits before the nibbles; sub-block pair k takes
// bits 2k and 2k + 1 of each byte.
void dequantize_q5_k(const uint8_t* b, float* y) {
  const float d = half_to_float(b), dmin = half_to_float(b + 2);
  const uint8_t* scales = b + 4;
  const uint8_t* qh = b + 16;
  const uint8_t* ql = b + 48;
  uint8_t u1 = 1, u2 = 2;
  for (int is = 0; is < 8; is += 2) {
    int sc, m;
    scale_and_min(is, scales, sc, m);
    const float d1 = d * float(sc), m1 = dmin * float(m);
    scale_and_min(is + 1, scales, sc, m);
    const float d2 = d * float(sc), m2 = dmin * float(m);
    for (int l = 0; l < 32; ++l) *y++ = d1 * float((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
    for (int l = 0; l < 32; ++l) *y++ = d2 * float((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
    ql += 32;
    u1 = uint8_t(u1 << 2);
    u2 = uint8_t(u2 << 2);
  }
}

// Q6_K: 128 bytes of low nibbles, 64 bytes of high 2-bit pairs, 16 int8 scales (one per 16
// values), f16 d; values are 6-bit, centred on 32.
void dequantize_q6_k(const uint8_t* b, float* y) {
  const uint8_t* ql = b;
  const uint8_t* qh = b + 128;
  const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192);
  const float d = half_to_float(b + 208);
  for (int n = 0; n < kQKK; n += 128) {
    for (int l = 0; l < 32; ++l) {
      const int is = l / 16;
      const int q1 = ((ql[l] & 0xF) | ((qh[l] >> 0) & 3) << 4) - 32;
      const int q2 = ((ql[l + 32] & 0xF) | ((qh[l] >> 2) & 3) << 4) - 32;
      const int q3 = ((ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4) - 32;
      const int q4 = ((ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4) - 32;
      y[l] = d * float(sc[is]) * float(q1);
      y[l + 32] = d * float(sc[is + 2]) * float(q2);
      y[l + 64] = d * float(sc[is + 4]) * float(q3);
      y[l + 96] = d * float(sc[is + 6]) * float(q4);
    }
    y += 128;
    ql += 64;
    qh += 32;
    sc += 8;
  }
}

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

TypeInfo checked_info(Type type) {
  auto info = type_info(static_cast<uint32_t>(type));
  FT_CHECK(info.has_value(), kPlace, "unknown tensor type ", static_cast<uint32_t>(type));
  return *info;
}

}  // namespace

std::optional<TypeInfo> type_info(uint32_t type) {
  for (const auto& t : kTypes)
    if (static_cast<uint32_t>(t.type) == type) return t;
  return std::nullopt;
}

std::string type_name(uint32_t type) {
  // ggml.h's numbers; 4, 5 and 31..33 are types ggml has since removed, 36..38 too.
  static const char* const names[] = {
      "F32",   "F16",        "Q4_0",       "Q4_1",       "Q4_2",     "Q4_3",     "Q5_0",
      "Q5_1",  "Q8_0",       "Q8_1",       "Q2_K",       "Q3_K",     "Q4_K",     "Q5_K",
      "Q6_K",  "Q8_K",       "IQ2_XXS",    "IQ2_XS",     "IQ3_XXS",  "IQ1_S",    "IQ4_NL",
      "IQ3_S", "IQ2_S",      "IQ4_XS",     "I8",         "I16",      "I32",      "I64",
      "F64",   "IQ1_M",      "BF16",       "Q4_0_4_4",   "Q4_0_4_8", "Q4_0_8_8", "TQ1_0",
      "TQ2_0", "IQ4_NL_4_4", "IQ4_NL_4_8", "IQ4_NL_8_8", "MXFP4",    "NVFP4",    "Q1_0"};
  return type < std::size(names) ? names[type] : "unknown";
}

bool can_dequantize(Type type) {
  switch (type) {
    case Type::F32:
    case Type::F16:
    case Type::BF16:
    case Type::F64:
    case Type::Q4_0:
    case Type::Q4_1:
    case Type::Q5_0:
    case Type::Q5_1:
    case Type::Q8_0:
    case Type::Q2_K:
    case Type::Q4_K:
    case Type::Q5_K:
    case Type::Q6_K:
      return true;
    default:
      return false;
  }
}

void dequantize(Type type, const uint8_t* data, size_t n, float* out) {
  const TypeInfo info = checked_info(type);
  FT_CHECK(can_dequantize(type), kPlace, "cannot dequantize ", info.name, " tensors");
  FT_CHECK(n % size_t(info.block) == 0, kPlace, n, " values are not whole ", info.name,
           " blocks of ", info.block);
  const size_t blocks = n / size_t(info.block);
  for (size_t i = 0; i < blocks; ++i) {
    const uint8_t* b = data + i * size_t(info.bytes);
    float* y = out + i * size_t(info.block);
    switch (type) {
      case Type::F32:
        std::memcpy(y, b, 4);
        break;
      case Type::F16:
        *y = half_to_float(b);
        break;
      case Type::BF16:
        *y = bf16_to_float(b);
        break;
      case Type::F64: {
        double v;
        std::memcpy(&v, b, 8);
        *y = static_cast<float>(v);
        break;
      }
      case Type::Q4_0:
        dequantize_q4_0(b, y);
        break;
      case Type::Q4_1:
        dequantize_q4_1(b, y);
        break;
      case Type::Q5_0:
        dequantize_q5(b, y, false);
        break;
      case Type::Q5_1:
        dequantize_q5(b, y, true);
        break;
      case Type::Q8_0:
        dequantize_q8_0(b, y);
        break;
      case Type::Q2_K:
        dequantize_q2_k(b, y);
        break;
      case Type::Q4_K:
        dequantize_q4_k(b, y);
        break;
      case Type::Q5_K:
        dequantize_q5_k(b, y);
        break;
      case Type::Q6_K:
        dequantize_q6_k(b, y);
        break;
      default:
        FT_ASSERT(false);
    }
  }
}

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

// Note [GGUF blocks as MLX affine groups]
// MLX's affine quantization stores, per group of values, w = scale * q + bias with q
// unsigned. Q4_1 is that form already (scale d, bias m); Q4_0's d (q - 8) is scale d with
// bias -8 d, and Q8_0's d q (q signed) is d (q + 128) - 128 d: scale d, bias -128 d. With
// float32 scales and biases every product and sum is exact or rounds as ggml's own float32
// dequantization does, so the values are the same (a zero may change sign: Q4_0's 0 d is
// -0 for a negative d, where 8 d - 8 d is +0). In float16 the scales and biases are
// still exact (d and m are float16 values, -8 d and -128 d powers of two times them), but a
// float16 product or sum can round where ggml's float32 one does not.
bool maps_to_affine(Type type) {
  return type == Type::Q4_0 || type == Type::Q4_1 || type == Type::Q8_0;
}

Affine to_affine(Type type, const uint8_t* data, int rows, int cols, mx::Dtype scale_dtype) {
  const TypeInfo info = checked_info(type);
  FT_CHECK(maps_to_affine(type), kPlace, info.name,
           " has no exact MLX affine form (Q4_0, Q4_1 and Q8_0 do)");
  FT_CHECK(rows > 0 && cols > 0 && cols % kQK == 0, kPlace, "a ", info.name, " tensor of ", rows,
           " x ", cols, " is not whole rows of 32-value blocks");
  const int bits = type == Type::Q8_0 ? 8 : 4;
  const int groups = cols / kQK;
  const int words = cols * bits / 32;
  std::vector<uint32_t> packed(size_t(rows) * size_t(words), 0);
  std::vector<float> scales(size_t(rows) * size_t(groups)), biases(scales.size());
  for (int r = 0; r < rows; ++r) {
    for (int g = 0; g < groups; ++g) {
      const size_t block = size_t(r) * size_t(groups) + size_t(g);
      const uint8_t* b = data + block * size_t(info.bytes);
      const float d = half_to_float(b);
      uint32_t* w = packed.data() + size_t(r) * size_t(words) + size_t(g) * size_t(kQK * bits / 32);
      scales[block] = d;
      if (type == Type::Q8_0) {
        biases[block] = -128.0f * d;
        const int8_t* qs = reinterpret_cast<const int8_t*>(b + 2);
        for (int j = 0; j < kQK; ++j) w[j / 4] |= uint32_t(uint8_t(qs[j] + 128)) << (8 * (j % 4));
        continue;
      }
      biases[block] = type == Type::Q4_0 ? -8.0f * d : half_to_float(b + 2);
      const uint8_t* qs = b + (type == Type::Q4_0 ? 2 : 4);
      for (int j = 0; j < kQK / 2; ++j) {  // Note [Nibble order]
        const uint32_t lo = qs[j] & 0xF, hi = qs[j] >> 4;
        w[j / 8] |= lo << (4 * (j % 8));
        w[(j + 16) / 8] |= hi << (4 * ((j + 16) % 8));
      }
    }
  }
  mx::array weight(packed.begin(), {rows, words}, mx::uint32);
  mx::array s(scales.begin(), {rows, groups}, mx::float32);
  mx::array z(biases.begin(), {rows, groups}, mx::float32);
  return {weight, mx::astype(s, scale_dtype), mx::astype(z, scale_dtype), bits, kQK};
}

}  // namespace ft::io::ggml
