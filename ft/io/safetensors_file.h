// One safetensors file, read with its header checked before any tensor is touched.
//
// The format: an 8-byte little-endian header length, a JSON header mapping each tensor
// name to {dtype, shape, data_offsets: [begin, end]} (offsets relative to the end of
// the header), then the data. A corrupt or truncated file is reported with the file
// and the tensor at fault instead of reading past the end.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <mlx/array.h>  // defines: mlx::core::array, Dtype, Shape

#include "ft/core/param_map.h"

namespace ft::io {

namespace mx = mlx::core;

struct SafetensorsEntry {
  std::string name;
  mx::Dtype dtype = mx::float32;
  mx::Shape shape;
  uint64_t begin = 0;  // absolute byte offsets in the file
  uint64_t end = 0;
};

struct SafetensorsHeader {
  std::vector<SafetensorsEntry> tensors;  // in natural name order
  std::unordered_map<std::string, std::string> metadata;
};

// Reads and checks the header: length within the file, valid JSON, known dtypes, each
// tensor's byte range inside the file and matching its shape and dtype.
SafetensorsHeader read_safetensors_header(const std::filesystem::path& file);
// The same checks on a header already read: its JSON text, from a file of file_size
// bytes whose data starts right after it. file names the file in errors.
SafetensorsHeader parse_safetensors_header(const std::filesystem::path& file,
                                           std::string_view header_json, uint64_t file_size);

// Loads the tensors (only those named in `only`, when given) one at a time, casting
// floating-point ones to dtype when given.
ParamMap load_safetensors_file(const std::filesystem::path& file, std::optional<mx::Dtype> dtype,
                               const std::unordered_set<std::string>* only = nullptr);

}  // namespace ft::io
