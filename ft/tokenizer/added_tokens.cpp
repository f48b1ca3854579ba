#include "ft/tokenizer/added_tokens.h"

#include "ft/tokenizer/unicode.h"

namespace ft::tokenizer {

AddedTokenMatcher::AddedTokenMatcher(std::vector<AddedToken> tokens,
                                     std::vector<std::string> patterns)
    : tokens_(std::move(tokens)) {
  trie_.emplace_back();
  for (size_t i = 0; i < tokens_.size(); ++i) {
    const std::string& p = patterns[i];
    if (p.empty()) continue;
    first_byte_[static_cast<unsigned char>(p[0])] = true;
    int node = 0;
    for (unsigned char c : p) {
      int child = -1;
      for (auto [b, n] : trie_[node].children)
        if (b == c) child = n;
      if (child < 0) {
        child = static_cast<int>(trie_.size());
        trie_[node].children.emplace_back(c, child);
        trie_.emplace_back();
      }
      node = child;
    }
    // The first token listed keeps a pattern two tokens share.
    if (trie_[node].token < 0) trie_[node].token = static_cast<int>(i);
  }
}

int AddedTokenMatcher::longest_at(std::string_view text, size_t pos, size_t& length) const {
  int node = 0, found = -1;
  for (size_t k = pos; k < text.size(); ++k) {
    const unsigned char c = static_cast<unsigned char>(text[k]);
    int child = -1;
    for (auto [b, n] : trie_[node].children)
      if (b == c) {
        child = n;
        break;
      }
    if (child < 0) break;
    node = child;
    if (trie_[node].token >= 0) {
      found = trie_[node].token;
      length = k + 1 - pos;
    }
  }
  return found;
}

namespace {

// Word characters for single_word: alphanumerics and '_'.
bool is_word_char(char32_t c) {
  return c == '_' || is_alphanumeric(c);
}

char32_t last_char(std::string_view s) {
  size_t start = s.size() - 1;
  while (start > 0 && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) --start;
  return utf8_next(s, start);
}

}  // namespace

void AddedTokenMatcher::split(std::string_view text, std::vector<Segment>& out) const {
  size_t done = 0;  // text before this is already in out
  size_t pos = 0;
  while (pos < text.size()) {
    if (!first_byte_[static_cast<unsigned char>(text[pos])]) {
      ++pos;
      continue;
    }
    size_t length = 0;
    const int index = longest_at(text, pos, length);
    if (index < 0) {
      ++pos;
      continue;
    }
    const AddedToken& token = tokens_[index];
    size_t start = pos, stop = pos + length;
    pos = stop;  // matches never overlap, even a rejected one
    if (start < done) continue;
    if (token.single_word) {
      const bool word_before = start > 0 && is_word_char(last_char(text.substr(0, start)));
      size_t after = stop;
      const bool word_after = stop < text.size() && is_word_char(utf8_next(text, after));
      if (word_before || word_after) continue;
    }
    if (token.lstrip) {
      size_t s = start;
      while (s > done) {
        size_t prev = s - 1;
        while (prev > 0 && (static_cast<unsigned char>(text[prev]) & 0xC0) == 0x80) --prev;
        size_t i = prev;
        if (!is_whitespace(utf8_next(text, i))) break;
        s = prev;
      }
      start = s;
    }
    if (token.rstrip) {
      while (stop < text.size()) {
        size_t i = stop;
        if (!is_whitespace(utf8_next(text, i))) break;
        stop = i;
      }
      pos = std::max(pos, stop);
    }
    if (start > done) out.push_back({done, start, -1});
    out.push_back({start, stop, token.id});
    done = stop;
  }
  if (done < text.size()) out.push_back({done, text.size(), -1});
}

}  // namespace ft::tokenizer
