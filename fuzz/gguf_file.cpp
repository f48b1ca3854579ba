// A GGUF file: the header's counts, strings, metadata values (nested arrays), tensor infos
// (dimensions, types, offsets, sizes) and the data section's place, then every tensor
// read: as an array where ft loads its type, as bytes otherwise.
#include "ft/io/gguf_file.h"
#include "fuzz/fuzz_target.h"

#include <mlx/transforms.h>  // defines: eval

FT_FUZZ_TARGET(gguf_file) {
  const auto file = ft::fuzz::write_temp(ft::fuzz::bytes(data, size), "model.gguf");
  return ft::fuzz::refusing([&] {
    const ft::io::GgufFile gguf = ft::io::read_gguf_file(file);
    for (const auto& tensor : gguf.tensors) {
      try {
        mlx::core::eval(ft::io::load_gguf_tensor(gguf, tensor));
      } catch (const ft::Error&) {  // a quantized type: its bytes instead
        ft::io::read_gguf_tensor_bytes(gguf, tensor);
      }
    }
  });
}
