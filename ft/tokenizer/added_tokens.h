// Added tokens: strings matched in the text before the model sees it, leftmost and then
// longest first, with the lstrip / rstrip / single_word rules of the Hugging Face library.
// Internal to ft/tokenizer.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "ft/tokenizer/components.h"

namespace ft::tokenizer {

struct AddedToken {
  int id = 0;
  std::string content;
  bool single_word = false, lstrip = false, rstrip = false, normalized = false, special = false;
};

// A stretch of text: an added token (id >= 0) or text for the model (id == -1).
struct Segment {
  size_t begin, end;
  int id;
};

// Finds the added tokens of one kind (matched in raw or in normalized text).
class AddedTokenMatcher {
 public:
  // patterns[i] is what tokens[i] looks like in the text it is matched in.
  AddedTokenMatcher(std::vector<AddedToken> tokens, std::vector<std::string> patterns);
  AddedTokenMatcher() = default;

  // Splits text into segments covering it, in order. Empty text gives no segment.
  void split(std::string_view text, std::vector<Segment>& out) const;

 private:
  // The longest pattern starting at text[pos], as an index into tokens_ (and its length in
  // bytes), or -1.
  int longest_at(std::string_view text, size_t pos, size_t& length) const;

  std::vector<AddedToken> tokens_;
  struct Node {
    std::vector<std::pair<unsigned char, int>> children;  // byte -> node
    int token = -1;                                       // index into tokens_
  };
  std::vector<Node> trie_;
  bool first_byte_[256] = {};  // bytes that can start a pattern
};

}  // namespace ft::tokenizer
