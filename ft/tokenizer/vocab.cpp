#include "ft/tokenizer/vocab.h"

#include "ft/core/error.h"

namespace ft::tokenizer {

void Vocab::add(const std::string& token, int id) {
  FT_CHECK(id >= 0, "tokenizer", "token '", token, "' has a negative id ", id);
  FT_CHECK(ids_.emplace(token, id).second, "tokenizer", "token '", token,
           "' appears twice in the vocabulary");
  if (id >= static_cast<int>(tokens_.size())) {
    tokens_.resize(id + 1);
    present_.resize(id + 1, false);
  }
  FT_CHECK(!present_[id], "tokenizer", "id ", id, " is given to two tokens");
  tokens_[id] = token;
  present_[id] = true;
}

}  // namespace ft::tokenizer
