// The WordPiece model: greedy longest match from the left, later pieces carrying the
// continuing prefix ("##"); a word with no full cover, or too long, is one unknown token.
#include "ft/core/error.h"
#include "ft/tokenizer/components.h"
#include "ft/tokenizer/models.h"
#include "ft/tokenizer/unicode.h"
#include "ft/tokenizer/vocab.h"

namespace ft::tokenizer {
namespace {

class WordPiece : public Model {
 public:
  explicit WordPiece(const json& j) {
    for (const auto& [token, id] : j.at("vocab").items())
      vocab_.add(token, token_id(id, "WordPiece vocabulary id of '" + token + "'"));
    const std::string unk = j.value("unk_token", std::string("[UNK]"));
    auto id = vocab_.find(unk);
    FT_CHECK(id.has_value(), "tokenizer", "WordPiece unk_token '", unk,
             "' is not in the vocabulary");
    unk_id_ = *id;
    prefix_ = j.value("continuing_subword_prefix", std::string("##"));
    max_chars_ = count_field(j, "max_input_chars_per_word", 100, "WordPiece");
  }

  void tokenize(std::string_view word, std::vector<int>& ids) const override {
    size_t chars = 0;
    for (size_t i = 0; i < word.size(); utf8_next(word, i)) ++chars;
    if (chars > max_chars_) {
      ids.push_back(unk_id_);
      return;
    }
    std::vector<int> pieces;
    std::string candidate;
    for (size_t start = 0; start < word.size();) {
      size_t end = word.size();
      std::optional<int> found;
      while (start < end) {
        candidate.assign(start > 0 ? prefix_ : std::string());
        candidate.append(word.substr(start, end - start));
        if ((found = vocab_.find(candidate))) break;
        do --end;  // back to the previous character boundary
        while (end > start && (static_cast<unsigned char>(word[end]) & 0xC0) == 0x80);
      }
      if (!found) {
        ids.push_back(unk_id_);
        return;
      }
      pieces.push_back(*found);
      start = end;
    }
    ids.insert(ids.end(), pieces.begin(), pieces.end());
  }

  std::optional<int> token_to_id(std::string_view token) const override {
    return vocab_.find(token);
  }
  const std::string* id_to_token(int id) const override { return vocab_.token(id); }
  int vocab_size() const override { return vocab_.size(); }

 private:
  Vocab vocab_;
  int unk_id_ = 0;
  std::string prefix_;
  size_t max_chars_ = 100;
};

}  // namespace

std::unique_ptr<Model> make_wordpiece(const json& j) {
  return std::make_unique<WordPiece>(j);
}

}  // namespace ft::tokenizer
