// Helpers shared by the nn tests.
#pragma once

#include <string>
#include <vector>

#include <mlx/ops.h>
#include <mlx/random.h>
#include <mlx/transforms.h>

namespace ft_test {

namespace mx = mlx::core;

inline float max_abs_diff(const mx::array& a, const mx::array& b) {
  auto d = mx::abs(mx::subtract(mx::astype(a, mx::float32), mx::astype(b, mx::float32)));
  return mx::max(d).item<float>();
}

inline float max_abs(const mx::array& a) {
  return mx::max(mx::abs(mx::astype(a, mx::float32))).item<float>();
}

inline mx::array randn(const mx::Shape& shape, uint64_t seed, float std = 1.0f) {
  return mx::random::normal(shape, mx::float32, 0.0f, std, mx::random::key(seed));
}

inline std::vector<float> to_vector(const mx::array& a) {
  auto f = mx::astype(mx::flatten(a), mx::float32);
  mx::eval(f);
  return std::vector<float>(f.data<float>(), f.data<float>() + f.size());
}

// Expects fn to throw ft::Error whose message contains `part`.
#define EXPECT_FT_ERROR(statement, part)                                          \
  do {                                                                            \
    try {                                                                         \
      statement;                                                                  \
      ADD_FAILURE() << "expected ft::Error containing '" << (part) << "'";        \
    } catch (const ft::Error& e) {                                                \
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what(); \
    }                                                                             \
  } while (0)

}  // namespace ft_test
