// ft::tokenizer::Tokenizer: a Hugging Face tokenizer (tokenizer.json) that encodes and
// decodes exactly as the `tokenizers` library does, with the special tokens and BOS/EOS
// rules of tokenizer_config.json, special_tokens_map.json and generation_config.json.
//
// Supported: models BPE (byte-level and SentencePiece style with byte fallback), Unigram,
// WordPiece; the normalizers, pre-tokenizers, decoders and post-processors listed in
// components.h's builders. Anything else is an ft::Error naming it.
//
// Invalid UTF-8 in the input is not an error: each maximal invalid subpart becomes U+FFFD
// (as Python's errors="replace" and Rust's from_utf8_lossy do) before encoding.
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ft::tokenizer {

// Ids with the token string of each id (pieces[i] is id_to_token(ids[i])).
struct Encoding {
  std::vector<int> ids;
  std::vector<std::string> pieces;
};

// A special token named by the configuration (bos, eos, pad, unk).
struct SpecialToken {
  std::string content;
  int id;
};

// The text of a tokenizer file, gunzipped when its name ends in .gz. Errors name the file.
std::string read_tokenizer_file(const std::filesystem::path& path);

class Tokenizer {
 public:
  // Reads dir/tokenizer.json (or tokenizer.json.gz) and, when present, tokenizer_config.json,
  // special_tokens_map.json and generation_config.json. Errors name the file.
  static Tokenizer from_dir(const std::filesystem::path& dir);
  // The same from file contents; an empty string stands for an absent file. source names
  // the tokenizer.json in errors.
  static Tokenizer from_json_text(std::string_view tokenizer_json,
                                  std::string_view tokenizer_config_json = {},
                                  std::string_view special_tokens_map_json = {},
                                  std::string_view generation_config_json = {},
                                  const std::string& source = "tokenizer.json");

  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  // Token ids of text; add_special_tokens applies the post-processor (BOS/EOS templates).
  // Thread-safe.
  std::vector<int> encode(std::string_view text, bool add_special_tokens = true) const;
  Encoding encode_with_pieces(std::string_view text, bool add_special_tokens = true) const;
  // Text of ids through the decoder; unknown ids are left out, and with
  // skip_special_tokens so are the added tokens marked special.
  std::string decode(const std::vector<int>& ids, bool skip_special_tokens = false) const;

  std::optional<std::string> id_to_token(int id) const;
  std::optional<int> token_to_id(std::string_view token) const;
  // One past the largest id of the model and the added tokens: the embedding rows needed.
  int vocab_size() const;

  const std::optional<SpecialToken>& bos_token() const;
  const std::optional<SpecialToken>& eos_token() const;
  const std::optional<SpecialToken>& pad_token() const;
  const std::optional<SpecialToken>& unk_token() const;
  // Every id that ends generation: eos_token and generation_config's eos_token_id(s).
  const std::vector<int>& eos_token_ids() const;
  // Ids of the added tokens marked special, ascending.
  const std::vector<int>& special_token_ids() const;
  bool is_special(int id) const;

 private:
  struct Impl;
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace ft::tokenizer
