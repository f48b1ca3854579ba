// Writing a GGUF file (version 3): metadata in the order given, tensor infos, then each
// tensor's bytes at offsets aligned to general.alignment (32 unless the metadata sets it).
// The layout is the one the `gguf` package's GGUFWriter produces, byte for byte
// (tests/io/gguf_writer_test.cpp), and what io::read_gguf_file reads back.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include <mlx/array.h>  // defines: mlx::core::array, Shape

#include "ft/io/ggml_quants.h"
#include "ft/io/gguf_file.h"

namespace ft::io {

class GgufWriter {
 public:
  // A metadata pair. Throws ft::Error for a key given twice, an empty key, an empty array
  // or an array whose items are not all of its element type.
  void add(const std::string& key, GgufValue value);

  // A tensor of this row-major shape (1 to 4 dimensions, the row length a multiple of the
  // type's block) whose bytes are already in the type's layout. Throws ft::Error for a
  // name given twice or longer than GGUF's 63 bytes, or a byte count that does not fit.
  void add_tensor(const std::string& name, const mx::Shape& shape, ggml::Type type,
                  std::vector<uint8_t> bytes);
  // A float32, float16 or bfloat16 array as a tensor of its own type (F32, F16, BF16).
  void add_tensor(const std::string& name, const mx::array& values);

  // Writes the file through a temporary file beside it, renamed into place at the end, so
  // a failure leaves no partial file behind.
  void write(const std::filesystem::path& file) const;

 private:
  struct Tensor {
    std::string name;
    mx::Shape shape;
    ggml::Type type;
    std::vector<uint8_t> bytes;
  };
  uint64_t alignment() const;

  std::vector<std::pair<std::string, GgufValue>> metadata_;
  std::vector<Tensor> tensors_;
};

}  // namespace ft::io
