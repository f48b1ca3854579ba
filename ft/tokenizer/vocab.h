// Token <-> id tables shared by the models. Internal to ft/tokenizer.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace ft::tokenizer {

// The largest vocabulary ft loads: 2^24 ids, far above any real tokenizer's (about
// 260,000), and small enough that no file can make ft allocate gigabytes for its tables.
constexpr int kMaxVocabSize = 1 << 24;

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

class Vocab {
 public:
  // Throws ft::Error when id is outside [0, kMaxVocabSize) or the token or id is taken.
  void add(const std::string& token, int id);
  std::optional<int> find(std::string_view token) const {
    auto it = ids_.find(token);
    if (it == ids_.end()) return std::nullopt;
    return it->second;
  }
  const std::string* token(int id) const {
    return id >= 0 && id < static_cast<int>(tokens_.size()) && present_[id] ? &tokens_[id]
                                                                            : nullptr;
  }
  // One past the largest id.
  int size() const { return static_cast<int>(tokens_.size()); }

 private:
  std::unordered_map<std::string, int, StringHash, std::equal_to<>> ids_;
  std::vector<std::string> tokens_;
  std::vector<bool> present_;
};

}  // namespace ft::tokenizer
