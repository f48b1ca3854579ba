#include "ft/io/ggml_quants.h"

#include <cstring>

#include <mlx/ops.h>  // defines: array from a buffer, astype

#include "ft/core/error.h"
#include "ft/io/ggml_blocks.h"

namespace ft::io::ggml {
namespace {

using namespace blocks;

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

float bf16_to_float(const uint8_t* p) {
  uint32_t bits = uint32_t(p[0]) << 16 | uint32_t(p[1]) << 24;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
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

}  // namespace

TypeInfo blocks::checked_info(Type type) {
  auto info = type_info(static_cast<uint32_t>(type));
  FT_CHECK(info.has_value(), kPlace, "unknown tensor type ", static_cast<uint32_t>(type));
  return *info;
}

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
