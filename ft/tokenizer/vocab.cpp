#include "ft/tokenizer/vocab.h"

#include "ft/core/error.h"
#include "ft/tokenizer/components.h"

namespace ft::tokenizer {

void Vocab::add(const std::string& token, int id) {
  FT_CHECK(id >= 0, "tokenizer", "token '", token, "' has a negative id ", id);
  FT_CHECK(id < kMaxVocabSize, "tokenizer", "token '", token, "' has id ", id,
           ", past the largest vocabulary ft loads (", kMaxVocabSize, ")");
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

size_t count_field(const json& j, const char* key, size_t fallback, const std::string& what) {
  if (!j.is_object() || !j.contains(key)) return fallback;
  const json& v = j[key];
  // Checked before any conversion: a float or a negative number past size_t's range
  // converts to nothing defined.
  FT_CHECK(v.is_number_unsigned() && v.get<uint64_t>() < (uint64_t{1} << 31), "tokenizer", what,
           " '", key, "' is not a count below 2^31: ", v.dump().substr(0, 100));
  return static_cast<size_t>(v.get<uint64_t>());
}

int token_id(const json& v, const std::string& what) {
  FT_CHECK(v.is_number_integer(), "tokenizer", what,
           " is not an integer: ", v.dump().substr(0, 100));
  const bool in_range = v.is_number_unsigned()
                            ? v.get<uint64_t>() < uint64_t{kMaxVocabSize}
                            : v.get<int64_t>() >= 0 && v.get<int64_t>() < int64_t{kMaxVocabSize};
  FT_CHECK(in_range, "tokenizer", what, " ", v.dump(), " is outside [0, ", kMaxVocabSize,
           "), the ids ft loads");
  return static_cast<int>(v.get<int64_t>());
}

}  // namespace ft::tokenizer
