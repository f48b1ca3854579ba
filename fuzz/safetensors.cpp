// A safetensors file: the header's JSON, the entries' dtypes, shapes and data ranges
// (duplicates, overlaps, overflowing sizes), then the tensors read from the data.
#include "ft/io/safetensors_file.h"
#include "fuzz/fuzz_target.h"

FT_FUZZ_TARGET(safetensors) {
  const auto file = ft::fuzz::write_temp(ft::fuzz::bytes(data, size), "model.safetensors");
  return ft::fuzz::refusing([&] { ft::io::load_safetensors_file(file, std::nullopt); });
}
