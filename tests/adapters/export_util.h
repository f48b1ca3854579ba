// Helpers shared by the tests of ft's adapter exports (adapters_test.cpp,
// family_export_test.cpp): the random adapter values the committed exports were written
// with, and the comparisons they are checked by.
#pragma once

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <mlx/ops.h>
#include <mlx/random.h>

#include "ft/core/param_map.h"

namespace ft::testing {

// max |got - want| / max |want|
inline float relative_error(const mx::array& got, const mx::array& want) {
  auto diff = mx::max(mx::abs(mx::subtract(got, want)));
  auto scale = mx::max(mx::abs(want));
  return mx::divide(diff, scale).item<float>();
}

inline std::string read_bytes(const std::filesystem::path& file) {
  std::ifstream f(file, std::ios::binary);
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

// Nonzero values for every adapter tensor (lora_B too, so a wrong transpose or scale shows
// in the logits), drawn in name order from keys split off random::key(seed): 0.3 * N(0, 1)
// for lora_A and lora_B, the magnitude times 1 + 0.2 * U(0, 1) for DoRA. The committed
// exports hold the CPU's draws, so run this on the CPU (OnCpu).
inline ParamMap random_adapter_values(const ParamMap& adapters, uint64_t seed) {
  auto key = mx::random::key(seed);
  ParamMap values;
  for (const auto& [name, value] : adapters) {
    auto keys = mx::random::split(key);
    key = keys.first;
    const auto& sub = keys.second;
    if (name.ends_with("lora_magnitude"))
      values.set(
          name,
          mx::multiply(
              value, mx::add(mx::array(1.0f),
                             mx::multiply(mx::array(0.2f),
                                          mx::random::uniform(value.shape(), mx::float32, sub)))));
    else
      values.set(name, mx::multiply(mx::array(0.3f), mx::random::normal(value.shape(), mx::float32,
                                                                        0.0f, 1.0f, sub)));
  }
  values.eval();
  return values;
}

}  // namespace ft::testing
