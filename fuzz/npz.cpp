// A .npz file: a zip archive of .npy arrays, each with its header (dtype, order, shape).
#include "ft/io/npz.h"
#include "fuzz/fuzz_target.h"

FT_FUZZ_TARGET(npz) {
  const auto file = ft::fuzz::write_temp(ft::fuzz::bytes(data, size), "weights.npz");
  return ft::fuzz::refusing([&] { ft::io::load_npz(file, std::nullopt); });
}
