// One GGUF file (llama.cpp's format), read with every count, length, offset and size
// checked against the bytes that remain before it is used.
//
// The format (versions 2 and 3, little-endian): "GGUF", a u32 version, a u64 tensor count
// and a u64 metadata count; the metadata as key/value pairs (a key is a u64 length and
// its bytes, a value a u32 type and the value); one info per tensor (name, n_dims, n_dims
// u64 sizes with the row length first, ggml type, u64 offset into the data section); then
// the data section, at the header's end rounded up to general.alignment (default 32).
// A corrupt, truncated or hostile file is refused with an ft::Error naming the file, the
// fault and the byte where it was found, never read out of bounds.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include <mlx/array.h>  // defines: mlx::core::array, Dtype, Shape

#include "ft/io/ggml_quants.h"  // defines: ggml::Type

namespace ft::io {

namespace mx = mlx::core;

// The types of metadata values; the numbers are GGUF's.
enum class GgufValueType : uint32_t {
  UInt8 = 0,
  Int8 = 1,
  UInt16 = 2,
  Int16 = 3,
  UInt32 = 4,
  Int32 = 5,
  Float32 = 6,
  Bool = 7,
  String = 8,
  Array = 9,
  UInt64 = 10,
  Int64 = 11,
  Float64 = 12,
};

// "uint32", "string", ...; "type 42" for a number GGUF does not define.
std::string gguf_value_type_name(GgufValueType type);

struct GgufValue;

struct GgufArray {
  GgufValueType element_type = GgufValueType::UInt8;
  std::vector<GgufValue> items;
};

// One metadata value. The accessors throw ft::Error when the value is of another type.
struct GgufValue {
  // The alternatives in the order of GgufValueType, so index() is the type's number.
  using Storage = std::variant<uint8_t, int8_t, uint16_t, int16_t, uint32_t, int32_t, float, bool,
                               std::string, GgufArray, uint64_t, int64_t, double>;
  Storage value;

  GgufValueType type() const { return static_cast<GgufValueType>(value.index()); }
  // Any integer type whose value fits an int64.
  int64_t as_int() const;
  // float32 or float64.
  double as_float() const;
  bool as_bool() const;
  const std::string& as_string() const;
  const GgufArray& as_array() const;
};

struct GgufTensorInfo {
  std::string name;
  mx::Shape shape;                    // row-major: GGUF's sizes reversed, so the row length is last
  ggml::Type type = ggml::Type::F32;  // ft/io/ggml_quants.h
  uint64_t offset = 0;  // from the start of the file (GGUF's offset plus the data offset)
  uint64_t nbytes = 0;
};

struct GgufFile {
  std::filesystem::path path;
  uint32_t version = 0;
  std::vector<std::pair<std::string, GgufValue>> metadata;  // in the file's order
  std::vector<GgufTensorInfo> tensors;                      // in the file's order
  uint64_t alignment = 32;
  uint64_t data_offset = 0;  // where the data section starts

  // The value of a key, or nullptr.
  const GgufValue* find(std::string_view key) const;
  // The value of a key; throws ft::Error naming the file and the key when it is missing.
  const GgufValue& at(std::string_view key) const;
  const GgufTensorInfo* find_tensor(std::string_view name) const;
};

// Reads and checks the header (everything before the data section) and that each
// tensor's bytes lie inside the file. The data is not read.
GgufFile read_gguf_file(const std::filesystem::path& file);

// A tensor's bytes as stored (quantized blocks included).
std::vector<char> read_gguf_tensor_bytes(const GgufFile& gguf, const GgufTensorInfo& tensor);

// A tensor as an array of its shape: F32, F16, BF16 and F64 as float32, float16,
// bfloat16 and float64, I8..I64 as int8..int64. Quantized types are refused by name.
mx::array load_gguf_tensor(const GgufFile& gguf, const GgufTensorInfo& tensor);
// Whether load_gguf_tensor takes tensors of this type (the float and integer types).
bool load_gguf_tensor_supported(ggml::Type type);

}  // namespace ft::io
