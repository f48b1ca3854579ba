// Loading tokenizer.json and its configuration files, and the encode / decode pipeline:
// added tokens (raw) -> normalizer -> added tokens (normalized) -> pre-tokenizer -> model
// -> post-processor.
#include "ft/tokenizer/tokenizer.h"

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>

#include <zlib.h>

#include "ft/core/error.h"
#include "ft/tokenizer/added_tokens.h"
#include "ft/tokenizer/components.h"
#include "ft/tokenizer/models.h"
#include "ft/tokenizer/unicode.h"

namespace ft::tokenizer {

std::unique_ptr<Model> make_model(const json& j) {
  // Files written by older versions may leave out the model's type; it follows from the fields.
  std::string type;
  if (j.is_object() && !j.contains("type"))
    type = j.contains("merges")                                             ? "BPE"
           : j.contains("vocab") && j["vocab"].is_array()                   ? "Unigram"
           : j.contains("vocab") && j.contains("continuing_subword_prefix") ? "WordPiece"
                                                                            : "";
  if (type.empty()) type = json_type(j, "model");
  if (type == "BPE") return make_bpe(j);
  if (type == "Unigram") return make_unigram(j);
  if (type == "WordPiece") return make_wordpiece(j);
  unsupported("model", type);
}

struct Tokenizer::Impl {
  std::unique_ptr<Normalizer> normalizer;
  std::unique_ptr<PreTokenizer> pre_tokenizer;
  std::unique_ptr<Model> model;
  std::unique_ptr<PostProcessor> post_processor;
  std::unique_ptr<Decoder> decoder;

  std::vector<AddedToken> added;  // as listed in tokenizer.json
  // The token string of each added token: its content, normalized when the token is
  // matched in normalized text (the library's id_to_token and decode use that form).
  std::vector<std::string> added_piece;
  std::unordered_map<int, size_t> added_by_id;  // id -> index into added
  std::unordered_map<std::string, int> added_by_content;
  AddedTokenMatcher raw_matcher, normalized_matcher;

  std::optional<SpecialToken> bos, eos, pad, unk;
  std::vector<int> eos_ids, special_ids;
  int vocab_size = 0;

  void encode(std::string_view raw, bool add_special_tokens, std::vector<int>& ids) const {
    std::string repaired;
    std::string_view text = raw;
    if (!utf8_is_valid(raw)) {
      repaired = utf8_repair(raw);
      text = repaired;
    }
    std::vector<Segment> outer, inner;
    raw_matcher.split(text, outer);
    std::vector<Piece> pieces;
    for (const Segment& seg : outer) {
      if (seg.id >= 0) {
        ids.push_back(seg.id);
        continue;
      }
      std::string normalized(text.substr(seg.begin, seg.end - seg.begin));
      const bool at_start = seg.begin == 0 && !(normalizer && normalizer->drops_start(normalized));
      if (normalizer) normalizer->normalize(normalized);
      inner.clear();
      normalized_matcher.split(normalized, inner);
      for (const Segment& sub : inner) {
        if (sub.id >= 0) {
          ids.push_back(sub.id);
          continue;
        }
        pieces.clear();
        pieces.push_back(
            {normalized.substr(sub.begin, sub.end - sub.begin), at_start && sub.begin == 0});
        if (pre_tokenizer) pre_tokenizer->pre_tokenize(pieces);
        for (const Piece& p : pieces) model->tokenize(p.text, ids);
      }
    }
    if (post_processor) post_processor->process(ids, add_special_tokens);
  }

  const std::string* token_of(int id) const {
    auto it = added_by_id.find(id);
    if (it != added_by_id.end()) return &added_piece[it->second];
    return model->id_to_token(id);
  }
};

std::string read_tokenizer_file(const std::filesystem::path& path) {
  if (path.extension() == ".gz") {
    gzFile f = gzopen(path.c_str(), "rb");
    FT_CHECK(f != nullptr, "tokenizer", path.string(), ": cannot open");
    std::string out;
    char buf[1 << 16];
    int n;
    while ((n = gzread(f, buf, sizeof(buf))) > 0) out.append(buf, n);
    int err = 0;
    const char* message = gzerror(f, &err);
    const bool failed = n < 0 || (err != Z_OK && err != Z_STREAM_END);
    const std::string why = failed ? message : "";
    gzclose(f);
    FT_CHECK(!failed, "tokenizer", path.string(), ": not a readable gzip file: ", why);
    return out;
  }
  std::ifstream in(path, std::ios::binary);
  FT_CHECK(in, "tokenizer", path.string(), ": cannot open");
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

namespace {

json parse_json(std::string_view text, const std::string& source) {
  if (text.empty()) return json();
  try {
    return json::parse(text);
  } catch (const json::exception& e) {  // parse_error, or out_of_range for a number like 1e999
    throw Error("tokenizer", source + ": malformed JSON: " + e.what());
  }
}

// A special token entry in a config: "<s>", {"content": "<s>", ...} or null.
std::optional<std::string> token_content(const json& config, const char* key) {
  if (!config.is_object() || !config.contains(key)) return std::nullopt;
  const json& v = config[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string())
    return v["content"].get<std::string>();
  return std::nullopt;
}

}  // namespace

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

Tokenizer Tokenizer::from_dir(const std::filesystem::path& dir) {
  std::filesystem::path main = dir / "tokenizer.json";
  if (!std::filesystem::exists(main) && std::filesystem::exists(dir / "tokenizer.json.gz"))
    main = dir / "tokenizer.json.gz";
  FT_CHECK(std::filesystem::exists(main), "tokenizer", "no tokenizer.json in ", dir.string());
  auto optional_file = [&](const char* name) {
    const auto p = dir / name;
    return std::filesystem::exists(p) ? read_tokenizer_file(p) : std::string();
  };
  // Errors in a configuration file name that file.
  const std::string config = optional_file("tokenizer_config.json");
  const std::string special_map = optional_file("special_tokens_map.json");
  const std::string generation = optional_file("generation_config.json");
  parse_json(config, (dir / "tokenizer_config.json").string());
  parse_json(special_map, (dir / "special_tokens_map.json").string());
  parse_json(generation, (dir / "generation_config.json").string());
  return from_json_text(read_tokenizer_file(main), config, special_map, generation, main.string());
}

Tokenizer Tokenizer::from_json_text(std::string_view tokenizer_json,
                                    std::string_view tokenizer_config_json,
                                    std::string_view special_tokens_map_json,
                                    std::string_view generation_config_json,
                                    const std::string& source) {
  FT_CHECK(!tokenizer_json.empty(), "tokenizer", source, ": empty file");
  const json j = parse_json(tokenizer_json, source);
  const json config = parse_json(tokenizer_config_json, "tokenizer_config.json");
  const json special_map = parse_json(special_tokens_map_json, "special_tokens_map.json");
  const json generation = parse_json(generation_config_json, "generation_config.json");
  FT_CHECK(j.is_object(), "tokenizer", source, ": not a JSON object");
  const std::string version = j.contains("version") && j["version"].is_string()
                                  ? j["version"].get<std::string>()
                                  : std::string("(none)");
  FT_CHECK(version == "1.0", "tokenizer", source, ": unknown tokenizer.json version '", version,
           "' (ft reads version 1.0)");
  FT_CHECK(j.contains("model"), "tokenizer", source, ": no \"model\"");

  auto impl = std::make_unique<Impl>();
  try {
    auto get = [&](const char* key) { return j.contains(key) ? j[key] : json(); };
    impl->normalizer = make_normalizer(get("normalizer"));
    impl->pre_tokenizer = make_pre_tokenizer(get("pre_tokenizer"));
    impl->model = make_model(j["model"]);
    impl->post_processor = make_post_processor(get("post_processor"));
    impl->decoder = make_decoder(get("decoder"));
  } catch (const Error& e) {
    throw Error(e.place(), source + ": " + e.fact());
  } catch (const json::exception& e) {
    throw Error("tokenizer", source + ": unexpected structure: " + e.what());
  }
  Impl& t = *impl;

  // Added tokens, split by where they are matched.
  std::vector<AddedToken> raw, normalized;
  std::vector<std::string> raw_patterns, normalized_patterns;
  try {
    if (j.contains("added_tokens"))
      for (const auto& a : j["added_tokens"]) {
        AddedToken token;
        token.id = token_id(a.at("id"), "added token id");
        token.content = a.at("content").get<std::string>();
        token.single_word = a.value("single_word", false);
        token.lstrip = a.value("lstrip", false);
        token.rstrip = a.value("rstrip", false);
        token.normalized = a.value("normalized", !a.value("special", false));
        token.special = a.value("special", false);
        t.added_by_id[token.id] = t.added.size();
        t.added_by_content[token.content] = token.id;
        t.added.push_back(token);
        if (token.special) t.special_ids.push_back(token.id);
        std::string piece = token.content;
        if (token.normalized && t.normalizer) t.normalizer->normalize(piece);
        t.added_piece.push_back(piece);
        (token.normalized ? normalized : raw).push_back(token);
        (token.normalized ? normalized_patterns : raw_patterns).push_back(piece);
      }
  } catch (const Error& e) {
    throw Error(e.place(), source + ": " + e.fact());
  } catch (const json::exception& e) {
    throw Error("tokenizer", source + ": added_tokens: unexpected structure: " + e.what());
  }
  std::sort(t.special_ids.begin(), t.special_ids.end());
  t.raw_matcher = AddedTokenMatcher(std::move(raw), std::move(raw_patterns));
  t.normalized_matcher = AddedTokenMatcher(std::move(normalized), std::move(normalized_patterns));
  t.vocab_size = t.model->vocab_size();
  for (const auto& a : t.added) t.vocab_size = std::max(t.vocab_size, a.id + 1);

  Tokenizer tok(std::move(impl));
  // Special tokens: tokenizer_config.json first, then special_tokens_map.json.
  auto special = [&](const char* key) -> std::optional<SpecialToken> {
    auto content = token_content(config, key);
    if (!content) content = token_content(special_map, key);
    if (!content) return std::nullopt;
    auto id = tok.token_to_id(*content);
    FT_CHECK(id.has_value(), "tokenizer", key, " '", *content, "' is not a token of ", source);
    return SpecialToken{*content, *id};
  };
  t.bos = special("bos_token");
  t.eos = special("eos_token");
  t.pad = special("pad_token");
  t.unk = special("unk_token");
  if (t.eos) t.eos_ids.push_back(t.eos->id);
  if (generation.is_object() && generation.contains("eos_token_id")) {
    const json& e = generation["eos_token_id"];
    std::vector<int> listed;
    if (e.is_number_integer()) listed.push_back(token_id(e, "generation_config eos_token_id"));
    if (e.is_array())
      for (const auto& x : e) listed.push_back(token_id(x, "generation_config eos_token_id"));
    for (int id : listed)
      if (std::find(t.eos_ids.begin(), t.eos_ids.end(), id) == t.eos_ids.end())
        t.eos_ids.push_back(id);
  }

  // transformers' Llama and Gemma tokenizer classes rebuild the post-processor from
  // add_bos_token (default true) and add_eos_token (default false).
  std::string cls = config.is_object() ? config.value("tokenizer_class", std::string()) : "";
  if (cls.size() > 4 && cls.compare(cls.size() - 4, 4, "Fast") == 0) cls.resize(cls.size() - 4);
  if (cls == "LlamaTokenizer" || cls == "GemmaTokenizer" || cls == "CodeLlamaTokenizer") {
    const bool add_bos = config.value("add_bos_token", true);
    const bool add_eos = config.value("add_eos_token", false);
    FT_CHECK(!add_bos || t.bos, "tokenizer", "add_bos_token is set but there is no bos_token");
    FT_CHECK(!add_eos || t.eos, "tokenizer", "add_eos_token is set but there is no eos_token");
    t.post_processor =
        make_bos_eos_processor(add_bos ? std::optional<int>(t.bos->id) : std::nullopt,
                               add_eos ? std::optional<int>(t.eos->id) : std::nullopt);
  }
  return tok;
}

std::vector<int> Tokenizer::encode(std::string_view text, bool add_special_tokens) const {
  std::vector<int> ids;
  impl_->encode(text, add_special_tokens, ids);
  return ids;
}

Encoding Tokenizer::encode_with_pieces(std::string_view text, bool add_special_tokens) const {
  Encoding e;
  impl_->encode(text, add_special_tokens, e.ids);
  e.pieces.reserve(e.ids.size());
  for (int id : e.ids) {
    const std::string* s = impl_->token_of(id);
    e.pieces.push_back(s ? *s : std::string());
  }
  return e;
}

std::string Tokenizer::decode(const std::vector<int>& ids, bool skip_special_tokens) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (int id : ids) {
    if (skip_special_tokens && is_special(id)) continue;
    if (const std::string* s = impl_->token_of(id)) tokens.push_back(*s);
  }
  std::string out;
  if (impl_->decoder) {
    impl_->decoder->decode_chain(tokens);
    for (const auto& t : tokens) out += t;
  } else {
    for (size_t i = 0; i < tokens.size(); ++i) out += (i ? " " : "") + tokens[i];
  }
  return out;
}

std::optional<std::string> Tokenizer::id_to_token(int id) const {
  const std::string* s = impl_->token_of(id);
  return s ? std::optional<std::string>(*s) : std::nullopt;
}

std::optional<int> Tokenizer::token_to_id(std::string_view token) const {
  auto it = impl_->added_by_content.find(std::string(token));
  if (it != impl_->added_by_content.end()) return it->second;
  return impl_->model->token_to_id(token);
}

int Tokenizer::vocab_size() const {
  return impl_->vocab_size;
}
const std::optional<SpecialToken>& Tokenizer::bos_token() const {
  return impl_->bos;
}
const std::optional<SpecialToken>& Tokenizer::eos_token() const {
  return impl_->eos;
}
const std::optional<SpecialToken>& Tokenizer::pad_token() const {
  return impl_->pad;
}
const std::optional<SpecialToken>& Tokenizer::unk_token() const {
  return impl_->unk;
}
const std::vector<int>& Tokenizer::eos_token_ids() const {
  return impl_->eos_ids;
}
const std::vector<int>& Tokenizer::special_token_ids() const {
  return impl_->special_ids;
}
bool Tokenizer::is_special(int id) const {
  return std::binary_search(impl_->special_ids.begin(), impl_->special_ids.end(), id);
}

}  // namespace ft::tokenizer
