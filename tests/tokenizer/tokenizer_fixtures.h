// Shared by the tokenizer tests: the fixture cases and the tokenizers they were made with,
// each loaded once.
#pragma once

#include <fstream>
#include <map>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "ft/tokenizer/tokenizer.h"
#include "tests/test_util.h"

namespace ft::tokenizer::testing {

inline const nlohmann::json& cases() {
  static const nlohmann::json all = [] {
    std::ifstream in(std::string(FT_TEST_DATA) + "/tokenizer/cases.json");
    return nlohmann::json::parse(in);
  }();
  return all;
}

// Whether a fixture tokenizer is a real one, kept beside the repository
// (ft::testing::shared_tokenizers_dir) rather than beside the fixtures.
inline bool is_shared(const std::string& name) {
  return name == "qwen3" || name == "llama3" || name == "gemma3";
}

// The directory of a fixture tokenizer.
inline std::string tokenizer_dir(const std::string& name) {
  if (is_shared(name)) return ft::testing::shared_tokenizer(name);
  return std::string(FT_TEST_DATA) + "/tokenizer/" + name;
}

inline const Tokenizer& load(const std::string& name) {
  static std::map<std::string, std::unique_ptr<Tokenizer>> loaded;
  auto& slot = loaded[name];
  if (!slot) slot = std::make_unique<Tokenizer>(Tokenizer::from_dir(tokenizer_dir(name)));
  return *slot;
}

inline std::string from_hex(const std::string& hex) {
  std::string out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2)
    out += static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16));
  return out;
}

}  // namespace ft::tokenizer::testing
