// The stages of a Hugging Face tokenizer pipeline, each built from its tokenizer.json
// object: normalizer -> pre-tokenizer -> model -> post-processor, and the decoder back.
// Internal to ft/tokenizer; the public face is tokenizer.h.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace ft::tokenizer {

using json = nlohmann::json;

// A stretch of text on its way through pre-tokenization. at_start: it begins at the
// start of the input text (Metaspace's prepend_scheme "first" looks at it).
struct Piece {
  std::string text;
  bool at_start = false;
};

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual void normalize(std::string& text) const = 0;
  // Whether normalizing text removes its first character, so that the normalized text no
  // longer starts at the original's offset 0 (Metaspace's "first" scheme depends on it).
  virtual bool drops_start(std::string_view text) const { return false; }
};

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Replaces pieces by their splits, in order; empty pieces are dropped.
  virtual void pre_tokenize(std::vector<Piece>& pieces) const = 0;
};

class Model {
 public:
  virtual ~Model() = default;
  // Appends the ids of one pre-tokenized word.
  virtual void tokenize(std::string_view word, std::vector<int>& ids) const = 0;
  virtual std::optional<int> token_to_id(std::string_view token) const = 0;
  virtual const std::string* id_to_token(int id) const = 0;
  virtual int vocab_size() const = 0;
};

class Decoder {
 public:
  virtual ~Decoder() = default;
  // Rewrites the token strings; the decoded text is their concatenation.
  virtual void decode_chain(std::vector<std::string>& tokens) const = 0;
};

class PostProcessor {
 public:
  virtual ~PostProcessor() = default;
  // Adds the special tokens around one sequence's ids when add_special_tokens is set.
  virtual void process(std::vector<int>& ids, bool add_special_tokens) const = 0;
};

// Builders from tokenizer.json objects. A null object gives nullptr; an unknown "type"
// throws ft::Error naming it.
std::unique_ptr<Normalizer> make_normalizer(const json& j);
std::unique_ptr<PreTokenizer> make_pre_tokenizer(const json& j);
std::unique_ptr<Model> make_model(const json& j);
std::unique_ptr<Decoder> make_decoder(const json& j);
std::unique_ptr<PostProcessor> make_post_processor(const json& j);

// A post-processor that puts bos before and eos after the sequence (either may be absent);
// the rule transformers applies for add_bos_token / add_eos_token.
std::unique_ptr<PostProcessor> make_bos_eos_processor(std::optional<int> bos,
                                                      std::optional<int> eos);

// Shared helpers for the builders.
[[noreturn]] void unsupported(const std::string& stage, const std::string& type);
std::string json_type(const json& j, const std::string& stage);
// A token id from the file, checked to be an integer in [0, kMaxVocabSize); what names it.
int token_id(const json& v, const std::string& what);
// j[key], checked to be an integer in [0, 2^31), or fallback when j has no such key; what
// names the field in the error.
size_t count_field(const json& j, const char* key, size_t fallback, const std::string& what);
// The list j[key] of a Sequence, each element checked to be an object (a null element
// would otherwise build a missing stage).
const json& sequence_parts(const json& j, const char* key, const std::string& stage);
// The pattern of a Split / Replace: {"String": s} (a literal) or {"Regex": r}.
struct Pattern {
  std::string text;
  bool is_regex = false;
};
Pattern parse_pattern(const json& j, const std::string& stage);

}  // namespace ft::tokenizer
