// ft::Regex: a compiled PCRE2 regular expression, the one regex engine of ft. User patterns
// (LoRA targets, freezing, quantization recipes) and the tokenizers' patterns go through it.
// Matching never recurses on the stack and is bounded (Note [Regex limits] in regex.cpp):
// a pattern that would backtrack for ever is an ft::Error, never a hang or a crash.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ft {

class Regex {
 public:
  enum class Text {
    kBytes,    // any bytes; \w, \d and classes are ASCII
    kUnicode,  // valid UTF-8; \p{..}, \w and \s know Unicode (the tokenizers' patterns)
  };

  // Throws ft::Error("<place>", "regex '...' does not compile at offset N: why").
  Regex(std::string_view pattern, std::string place, Text text = Text::kBytes);
  ~Regex();
  Regex(Regex&&) noexcept;
  Regex& operator=(Regex&&) noexcept;

  const std::string& pattern() const { return pattern_; }

  // Whether the pattern matches somewhere in text (Python's re.search).
  bool search(std::string_view text) const;
  // Whether it matches the whole text; groups, when given, receives the whole match and
  // each capturing group (empty for a group that took no part).
  bool full_match(std::string_view text, std::vector<std::string_view>* groups = nullptr) const;
  // Byte ranges [begin, end) of the non-overlapping matches, left to right. Empty matches
  // are skipped. Text::kUnicode patterns need valid UTF-8.
  void find_all(std::string_view text, std::vector<std::pair<size_t, size_t>>& out) const;

 private:
  struct Impl;
  // Runs one match from start, anchored at both ends when whole; false when there is none.
  // A non-empty ranges asks for every group; it receives [begin, end) of each.
  bool match_at(std::string_view text, size_t start, bool whole, bool checked_utf8,
                std::vector<std::pair<size_t, size_t>>& ranges) const;

  std::string pattern_;
  std::string place_;
  std::unique_ptr<Impl> impl_;
};

// s with every regex metacharacter escaped: a pattern that matches s literally.
std::string regex_escape(std::string_view s);

}  // namespace ft
