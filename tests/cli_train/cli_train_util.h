// What the ft train CLI tests share: running ft, per-process temporary paths, the tiny
// model and data they train on, and readers of metrics.jsonl and ft eval --json.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>
#include <vector>

#include "tests/test_util.h"

namespace ft::testing::cli_train {

namespace fs = std::filesystem;
using Result = CommandResult;

inline Result run(const std::string& args) {
  return run_ft(args);
}

// Bit-for-bit resumption is a CPU promise (MLX's CUDA kernels may round differently from
// run to run), so runs compared that way use the CPU on every machine.
inline Result run_on_cpu(const std::string& args) {
  return run_ft("FT_DEVICE=cpu " + std::string(FT_BINARY) + " " + args, "", true);
}

// A fresh path per process: ctest runs the tests of this binary side by side.
inline fs::path temp(const std::string& name) {
  fs::path p =
      fs::path(::testing::TempDir()) / ("ft_cli_train_" + std::to_string(getpid()) + "_" + name);
  fs::remove_all(p);
  return p;
}

// ft init's tiny Llama (hidden 64, MLP 176, tied embeddings, byte-level tokenizer).
inline fs::path init_model(const std::string& name, int seed) {
  fs::path d = temp(name);
  Result r =
      run("init --arch llama --size tiny --seed " + std::to_string(seed) + " --out " + d.string());
  EXPECT_EQ(r.status, 0) << r.out;
  return d;
}

// The tiny model of seed 1, made once per test binary.
inline const fs::path& tiny_model() {
  static fs::path dir = init_model("model", 1);
  return dir;
}

inline const std::string kAddition = FT_SOURCE_DIR "/examples/data/addition";

// The first n records of the bundled training data.
inline fs::path small_data(int n) {
  fs::path p = temp("data_" + std::to_string(n) + ".jsonl");
  std::ifstream in(kAddition + "/train.jsonl");
  std::ofstream out(p);
  std::string line;
  for (int i = 0; i < n && std::getline(in, line); ++i) out << line << "\n";
  return p;
}

// The step records of a metrics.jsonl (evaluation records left out).
inline std::vector<nlohmann::json> step_records(const fs::path& file) {
  std::vector<nlohmann::json> records;
  std::ifstream in(file);
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line);
    if (j.contains("step") && j.contains("grad_norm")) records.push_back(j);
  }
  return records;
}

inline std::vector<float> metric_losses(const fs::path& file) {
  std::vector<float> losses;
  for (const auto& r : step_records(file)) losses.push_back(r["loss"].get<float>());
  return losses;
}

// ft eval --json's loss of a model (extra: e.g. " --adapter DIR").
inline double eval_loss(const fs::path& model, const fs::path& data,
                        const std::string& extra = "") {
  Result r = run("eval " + model.string() + " " + data.string() + " --json " + extra);
  EXPECT_EQ(r.status, 0) << r.out;
  return r.status == 0 ? nlohmann::json::parse(r.out)["loss"].get<double>() : 0.0;
}

// The whole output is one "ft: error: ..." line.
inline bool one_error_line(const std::string& out) {
  return std::regex_match(out, std::regex("ft: error: [^\n]*\n"));
}

}  // namespace ft::testing::cli_train
