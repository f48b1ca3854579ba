// Helpers for the tests of ft/io.
#pragma once

#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <mlx/ops.h>

#include "ft/core/error.h"
#include "ft/core/param_map.h"

namespace ft::testing {

namespace fs = std::filesystem;

// A fresh folder under the system temp dir, removed at the end of the test; named by the
// test and the process, so two test runs at once (two builds) keep apart.
class TempDir {
 public:
  TempDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path_ = fs::temp_directory_path() / (std::string("ft_io_") + info->test_suite_name() + "_" +
                                         info->name() + "_" + std::to_string(::getpid()));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

inline std::string golden_io(const std::string& name) {
  return std::string(FT_TEST_DATA) + "/io/" + name;
}

inline std::string read_bytes(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

inline void write_bytes(const fs::path& file, const std::string& bytes) {
  std::ofstream out(file, std::ios::binary);
  out << bytes;
}

// The message of the ft::Error that fn throws ("" and a failure when none).
template <typename Fn>
std::string error_of(Fn&& fn) {
  try {
    fn();
  } catch (const ft::Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "no ft::Error thrown";
  return "";
}

// Same names in the same order, same dtypes and shapes, bit-equal values.
inline void expect_same(const ParamMap& got, const ParamMap& want) {
  ASSERT_EQ(got.names(), want.names());
  for (const auto& [name, w] : want) {
    const auto& g = got.at(name);
    EXPECT_EQ(g.dtype(), w.dtype()) << name;
    EXPECT_EQ(g.shape(), w.shape()) << name;
    EXPECT_TRUE(mlx::core::array_equal(g, w).item<bool>()) << name;
  }
}

inline ParamMap sorted(const ParamMap& p) {
  auto names = p.names();
  std::sort(names.begin(), names.end(), natural_less);
  ParamMap out;
  for (const auto& n : names) out.set(n, p.at(n));
  return out;
}

}  // namespace ft::testing
