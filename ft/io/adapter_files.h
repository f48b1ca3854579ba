// The pieces the adapter files share (adapters.cpp, peft_adapter.cpp,
// mlx_lm_adapter.cpp): finding adapters in a model, paths and regexes, JSON fields with
// errors naming the file, and atomic folder writes. Internal to ft/io.
#pragma once

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "ft/core/error.h"
#include "ft/io/adapters.h"
#include "ft/nn/experts.h"  // defines: ExpertWeights
#include "ft/nn/lora.h"

namespace ft::io::adapter_files {

namespace fs = std::filesystem;
using json = nlohmann::json;

constexpr const char* kPlace = "adapter";
inline const std::string kPeftPrefix = "base_model.model.";

// Every LoRA/DoRA wrapper under model, by path.
std::vector<std::pair<std::string, const nn::LoRALinear*>> wrappers(const nn::Module& model);
// Every ExpertLoRA under model, by the path of the parameter it adapts.
std::vector<std::pair<std::string, const nn::ExpertLoRA*>> expert_adapters(const nn::Module& model);
// "a.b.c" -> {"a.b", "c"}.
std::pair<std::string, std::string> split_last(const std::string& path);
// The ExpertWeights at path in model, or null.
const nn::ExpertWeights* host_at(const nn::Module& model, const std::string& path);
// "model.layers.12.self_attn.q_proj" -> 12 and "self_attn.q_proj"; -1 off the layers.
std::pair<int, std::string> split_layer(const std::string& path);
// A regex matching exactly these paths.
std::string exact_regex(const std::vector<std::string>& paths);
void write_json(const fs::path& file, const json& value);
// Builds out_dir through fill(tmp) in a sibling folder renamed into place at the end.
void write_folder_atomically(const fs::path& out_dir,
                             const std::function<void(const fs::path&)>& fill);

struct Collected {
  std::vector<std::string> paths;    // LoRA/DoRA wrappers, in named_modules order
  std::vector<std::string> stacked;  // ExpertLoRA parameters, in named_modules order
  int rank = 0;                      // per expert for an ExpertLoRA
  bool dora = false;
};

// The adapted paths and their one rank; ft::Error when there are none, their ranks
// differ, or DoRA disagrees with config.
Collected collect(const nn::Module& model, const nn::LoraConfig& config);
float lora_scale(const nn::LoraConfig& config, int rank);
json read_json(const fs::path& file);
// The adapter's scaling settings, named with the file and the field.
void check_lora_settings(const nn::LoraConfig& c, const fs::path& file, const char* rank_key);

// A value as the error shows it: the JSON, cut short.
inline std::string shown(const json& v) {
  std::string text = v.dump();
  return text.size() > 60 ? text.substr(0, 57) + "..." : text;
}

// A field of type T; numbers must be numbers (a bool is not 1), and an integer must be
// an integer within int's range (a float converted to int past it is undefined).
template <typename T>
T field(const json& j, const char* key, const fs::path& file) {
  FT_CHECK(j.contains(key) && !j[key].is_null(), kPlace, file.string(), ": missing '", key, "'");
  const json& v = j[key];
  auto within_int = [&] {
    if (v.is_number_unsigned()) return v.get<uint64_t>() <= uint64_t(INT32_MAX);
    return v.is_number_integer() && v.get<int64_t>() >= INT32_MIN && v.get<int64_t>() <= INT32_MAX;
  };
  const bool wrong_number =
      (std::is_arithmetic_v<T> && !std::is_same_v<T, bool> && !v.is_number()) ||
      (std::is_integral_v<T> && !std::is_same_v<T, bool> && !within_int());
  FT_CHECK(!wrong_number, kPlace, file.string(), ": '", key, "' must be ",
           std::is_integral_v<T> ? "an integer within int's range" : "a number", ", got ",
           shown(v));
  try {
    return v.get<T>();
  } catch (const json::exception&) {
    throw Error(kPlace, file.string() + ": '" + key + "' has the wrong type: " + shown(v));
  }
}

// An optional field: fallback when absent or null.
template <typename T>
T field(const json& j, const char* key, const fs::path& file, const T& fallback) {
  return j.contains(key) && !j[key].is_null() ? field<T>(j, key, file) : fallback;
}

// The two layouts' readers: ft's names, not yet checked against a model.
Adapter read_peft(const fs::path& dir, const nn::Module* model, const ModulePrefix& prefix);
Adapter read_mlx_lm(const fs::path& dir);

}  // namespace ft::io::adapter_files
