// The tensor types of GGUF files (ggml's block formats): their sizes, dequantization to
// float32, quantization for the types ft writes, and the types that map exactly onto MLX's
// affine quantization.
//
// A block holds `block` consecutive values of a row in `bytes` bytes:
//   Q4_0  32 values: f16 d, 16 bytes of nibbles q;         x = d (q - 8)
//   Q4_1  32 values: f16 d, f16 m, 16 bytes of nibbles;    x = d q + m
//   Q5_0  32 values: f16 d, 4 bytes of fifth bits, nibbles; x = d (q - 16)
//   Q5_1  32 values: f16 d, f16 m, fifth bits, nibbles;     x = d q + m
//   Q8_0  32 values: f16 d, 32 int8 q;                     x = d q
//   Q4_K, Q5_K, Q6_K (and Q2_K, Q3_K): super-blocks of 256 values in sub-blocks of 16 or
//   32, each with its own 6-bit (Q6_K: 8-bit) scale and, for Q4_K/Q5_K, minimum.
// In the 32-value formats, byte j of the nibbles holds value j in its low half and value
// j + 16 in its high half (Note [Nibble order] in ggml_quants.cpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <mlx/array.h>  // defines: mlx::core::array, Dtype

namespace ft::io::ggml {

namespace mx = mlx::core;

// ggml's type numbers as GGUF stores them.
enum class Type : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  I8 = 24,
  I16 = 25,
  I32 = 26,
  I64 = 27,
  F64 = 28,
  BF16 = 30,
};

struct TypeInfo {
  Type type;
  const char* name;  // "Q4_K"
  int block;         // values per block (1 for plain types)
  int bytes;         // bytes per block
};

// The type of this number with its block size, or nullopt for one ft does not size (the
// i-quants and ternary types, unknown numbers).
std::optional<TypeInfo> type_info(uint32_t type);
// ggml's name of the number ("Q4_K", "IQ2_XXS", also for types ft does not know), or
// "unknown".
std::string type_name(uint32_t type);

// Whether dequantize() handles the type: the floats and every quantized type above but
// Q8_1 and Q8_K (intermediate formats, not found in model files).
bool can_dequantize(Type type);
// n values (a multiple of the type's block) from data (n / block * bytes bytes) into out.
// Throws ft::Error for a type can_dequantize refuses.
void dequantize(Type type, const uint8_t* data, size_t n, float* out);

// The types quantize() writes: Q8_0, Q5_0, Q5_1, Q4_0, Q4_1, Q4_K, Q5_K and Q6_K, as ggml's
// reference
// quantizers do, byte for byte (Note [K-quant search] in ggml_quants.cpp). n must be a
// multiple of the type's block (32; 256 for the K types).
bool can_quantize(Type type);
std::vector<uint8_t> quantize(Type type, const float* x, size_t n);

// Note [GGUF blocks as MLX affine groups]: Q4_0, Q4_1 and Q8_0 are MLX affine quantization
// with groups of 32 (4, 4 and 8 bits): the same values once dequantized in float32.
struct Affine {
  mx::array weight;  // (rows, cols * bits / 32) uint32
  mx::array scales;  // (rows, cols / 32)
  mx::array biases;  // (rows, cols / 32)
  int bits;
  int group_size;  // 32
};
bool maps_to_affine(Type type);
// A (rows, cols) tensor of one of those types, row-major, as MLX's affine form with scales and
// biases in scale_dtype (float32 keeps every value exact; float16 keeps Q4_0/Q8_0's d exact).
Affine to_affine(Type type, const uint8_t* data, int rows, int cols, mx::Dtype scale_dtype);

}  // namespace ft::io::ggml
