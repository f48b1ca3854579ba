// What every fuzz target shares. A target is one function of the input bytes; it calls a
// parser and lets only ft::Error pass (the clean refusal a bad input should get). Any other
// exception, a sanitizer report or a signal is a finding.
//
// Built with FT_FUZZ_MAIN (fuzz/CMakeLists.txt) the function is libFuzzer's entry point;
// without it, it is ft_fuzz_<name>, which tests/fuzz replays on the committed corpus and
// regressions in the normal test suite.
#pragma once

#include <unistd.h>  // defines: getpid

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

#include "ft/core/error.h"

#ifdef FT_FUZZ_MAIN
#define FT_FUZZ_TARGET(name) extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
#else
#define FT_FUZZ_TARGET(name) int ft_fuzz_##name(const uint8_t* data, size_t size)
#endif

namespace ft::fuzz {

inline std::string_view bytes(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

// The readers of files take a path: the input goes to a file of this process (in memory
// under /dev/shm where there is one), rewritten for each input.
inline std::filesystem::path write_temp(std::string_view contents, const std::string& name) {
  const std::filesystem::path dir =
      std::filesystem::exists("/dev/shm") ? "/dev/shm" : std::filesystem::temp_directory_path();
  const auto path = dir / ("ft_fuzz_" + std::to_string(getpid()) + "_" + name);
  std::ofstream(path, std::ios::binary | std::ios::trunc)
      .write(contents.data(), static_cast<std::streamsize>(contents.size()));
  return path;
}

// Runs fn, letting ft::Error (a clean refusal) end it quietly; with FT_FUZZ_VERBOSE set in
// the environment, the refusal is printed (to see what an input reaches).
template <typename Fn>
int refusing(Fn&& fn) {
  static const bool verbose = std::getenv("FT_FUZZ_VERBOSE") != nullptr;
  try {
    fn();
  } catch (const ft::Error& e) {
    if (verbose) std::fprintf(stderr, "refused: %s\n", e.what());
  }
  return 0;
}

}  // namespace ft::fuzz
