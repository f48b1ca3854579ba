#include "ft/io/gguf_tokenizer.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <map>
#include <set>
#include <tuple>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "ft/core/error.h"
#include "ft/tokenizer/unicode.h"

namespace ft::io {
namespace {

namespace fs = std::filesystem;

using json = nlohmann::ordered_json;

constexpr const char* kPlace = "gguf";
constexpr const char* kMetaspace = "\u2581";  // SentencePiece's word marker

// Note [GGUF tokenizers]
// A GGUF file keeps its tokenizer as lists: tokens, token types (1 normal, 3 control, 4
// user-defined, ...), merges "a b", special ids, the pre-tokenizer's name
// (tokenizer.ggml.pre) and the chat template. transformers rebuilds a tokenizer from them
// (integrations/gguf/gguf_tokenizer_mapping.py), and ft builds the same tokenizer.json:
//   - "gpt2" (byte-level BPE): tokens spelled in GPT-2's byte alphabet (a token with any
//     other character is respelled byte by byte), the file's merges, a ByteLevel
//     pre-tokenizer with GPT-2's split, or the split of a known `pre` (llama3, qwen2, ...)
//     followed by ByteLevel without its own split; ByteLevel decoding;
//   - control tokens written in the byte alphabet become special added tokens, user-defined
//     ones plain added tokens, so neither is cut into pieces;
//   - BOS and EOS are added as tokenizer.ggml.add_bos_token / add_eos_token say.
//   - "llama" (SentencePiece-style BPE): the tokens as they are, the file's merges or, when it
//     has none, the merges transformers derives from the vocabulary and the scores
//     (sentencepiece_merges), a Metaspace pre-tokenizer (prepend "▁" to the first word),
//     byte fallback, and BOS added unless the file says otherwise. The architectures whose
//     SentencePiece vocabularies transformers treats apart (gemma*, phi3) are refused.
//   - the special tokens the file names (bos, eos, unk, padding) are special added tokens
//     in both.
// Unigram ("t5") vocabularies are not converted yet.

// GPT-2's byte alphabet: printable bytes stand for themselves, the others (control bytes,
// space, 127-160 and 173) for U+0100 upward in byte order.
const std::array<uint32_t, 256>& byte_alphabet() {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    uint32_t next = 256;
    for (uint32_t b = 0; b < 256; ++b) {
      const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
      t[b] = printable ? b : next++;
    }
    return t;
  }();
  return table;
}

// The token in the byte alphabet: as it is when all its characters are in it, else its
// UTF-8 bytes respelled.
std::string byte_level_spelling(const std::string& token, const std::set<uint32_t>& alphabet) {
  bool spelled = tokenizer::utf8_is_valid(token);
  for (size_t i = 0; spelled && i < token.size();)
    spelled = alphabet.count(uint32_t(tokenizer::utf8_next(token, i))) > 0;
  if (spelled) return token;
  std::string out;
  for (unsigned char b : token) tokenizer::utf8_append(out, char32_t(byte_alphabet()[b]));
  return out;
}

// The splits transformers puts before ByteLevel for these pre-tokenizer names.
const std::map<std::string, std::string>& known_splits() {
  static const std::string llama3 =
      R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
  static const std::string qwen2 =
      R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
  static const std::string qwen35 =
      R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
  static const std::string gpt4o =
      R"([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
  static const std::string tekken =
      R"([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
  static const std::map<std::string, std::string> splits = {
      {"llama3", llama3},       {"llama-v3", llama3},
      {"llama-bpe", llama3},    {"falcon3", llama3},
      {"falcon-h1", llama3},    {"pixtral", llama3},
      {"midm-2.0", llama3},     {"lfm2", llama3},
      {"jina-v5-nano", llama3}, {"dbrx", llama3},
      {"smaug-bpe", llama3},    {"tekken", tekken},
      {"qwen2", qwen2},         {"deepseek-r1-qwen", qwen2},
      {"kormo", qwen2},         {"f2llmv2", qwen2},
      {"megrez", qwen2},        {"qwen35", qwen35},
      {"gpt-4o", gpt4o},        {"llama4", gpt4o},
      {"kanana2", gpt4o},       {"talkie", gpt4o},
      {"minimax-m2", gpt4o},
  };
  return splits;
}

// Code points of s, as Python's len() and slicing count them.
std::vector<std::string> code_points(const std::string& s) {
  std::vector<std::string> out;
  for (size_t i = 0; i < s.size();) {
    const size_t start = i;
    tokenizer::utf8_next(s, i);
    out.push_back(s.substr(start, i - start));
  }
  return out;
}

// transformers' generate_merges with scores: every split of every token into two tokens of
// the vocabulary, ordered within a token by the parts' ids, then all of them by score, then
// by the parts' lengths in code points, highest first, ties kept in that order.
std::vector<std::pair<std::string, std::string>> sentencepiece_merges(
    const std::vector<std::string>& tokens, const std::vector<double>& scores) {
  std::unordered_map<std::string, int64_t> ids;  // a later duplicate wins, as in a dict
  for (size_t i = 0; i < tokens.size(); ++i) ids[tokens[i]] = int64_t(i);
  // Token -> score in first-seen order, a later duplicate's score winning.
  std::vector<std::pair<std::string, double>> scored;
  std::unordered_map<std::string, size_t> position;
  for (size_t i = 0; i < tokens.size(); ++i) {
    auto [it, inserted] = position.emplace(tokens[i], scored.size());
    if (inserted) {
      scored.emplace_back(tokens[i], scores[i]);
    } else {
      scored[it->second].second = scores[i];
    }
  }
  struct Merge {
    std::string left, right;
    double score;
    size_t left_len, right_len;
  };
  std::vector<Merge> merges;
  for (const auto& [token, score] : scored) {
    const std::vector<std::string> cps = code_points(token);
    std::vector<Merge> local;
    std::string left;
    for (size_t k = 1; k < cps.size(); ++k) {
      left += cps[k - 1];
      std::string right;
      for (size_t r = k; r < cps.size(); ++r) right += cps[r];
      if (ids.count(left) && ids.count(right))
        local.push_back({left, right, score, k, cps.size() - k});
    }
    std::stable_sort(local.begin(), local.end(), [&](const Merge& a, const Merge& b) {
      return std::pair(ids.at(a.left), ids.at(a.right)) <
             std::pair(ids.at(b.left), ids.at(b.right));
    });
    merges.insert(merges.end(), local.begin(), local.end());
  }
  std::stable_sort(merges.begin(), merges.end(), [](const Merge& a, const Merge& b) {
    return std::tuple(a.score, a.left_len, a.right_len) >
           std::tuple(b.score, b.left_len, b.right_len);
  });
  std::vector<std::pair<std::string, std::string>> out;
  out.reserve(merges.size());
  for (auto& m : merges) out.emplace_back(std::move(m.left), std::move(m.right));
  return out;
}

std::vector<std::string> strings_of(const GgufFile& g, const std::string& key) {
  const GgufArray& a = g.at(key).as_array();
  FT_CHECK(a.element_type == GgufValueType::String, kPlace, g.path.string(), ": ", key,
           " must be an array of strings");
  std::vector<std::string> out;
  out.reserve(a.items.size());
  for (const auto& item : a.items) out.push_back(item.as_string());
  return out;
}

std::vector<int64_t> ints_of(const GgufFile& g, const std::string& key) {
  std::vector<int64_t> out;
  for (const auto& item : g.at(key).as_array().items) out.push_back(item.as_int());
  return out;
}

bool flag(const GgufFile& g, const std::string& key, bool fallback) {
  const GgufValue* v = g.find(key);
  return v ? v->as_bool() : fallback;
}

json added_token(int id, const std::string& content, bool special) {
  return json{{"id", id},        {"content", content},  {"single_word", false}, {"lstrip", false},
              {"rstrip", false}, {"normalized", false}, {"special", special}};
}

json byte_level(bool use_regex, bool add_prefix_space) {
  return json{{"type", "ByteLevel"},
              {"add_prefix_space", add_prefix_space},
              {"trim_offsets", true},
              {"use_regex", use_regex}};
}

// single: [BOS] A [EOS] as the flags say; pair likewise around each sequence.
json bos_eos_template(const std::vector<std::string>& tokens, std::optional<int64_t> bos,
                      std::optional<int64_t> eos) {
  json single = json::array(), pair = json::array(), special = json::object();
  auto add_special = [&](json& seq, int64_t id, int type_id) {
    const std::string& t = tokens[size_t(id)];
    seq.push_back({{"SpecialToken", {{"id", t}, {"type_id", type_id}}}});
    special[t] = {{"id", t}, {"ids", {id}}, {"tokens", {t}}};
  };
  for (int s = 0; s < 2; ++s) {
    json& seq = s == 0 ? single : pair;
    for (int part = 0; part < (s == 0 ? 1 : 2); ++part) {
      if (bos) add_special(seq, *bos, part);
      seq.push_back({{"Sequence", {{"id", part == 0 ? "A" : "B"}, {"type_id", part}}}});
      if (eos) add_special(seq, *eos, part);
    }
  }
  return json{{"type", "TemplateProcessing"},
              {"single", single},
              {"pair", pair},
              {"special_tokens", special}};
}

// Note [GGUF tokenizers out]
// A model folder's tokenizer (tokenizer.json's BPE model), written as llama.cpp reads it.
// Byte-level vocabularies (no byte fallback: Llama 3, Qwen, SmolLM, Mistral's tekken, GPT-2):
//   - tokenizer.ggml.model "gpt2"; the tokens in id order, spelled as tokenizer.json spells
//     them (the byte alphabet; added tokens as they are); the rows of the model's embedding
//     past the tokenizer's last id are "[PAD<id>]", unused (5), as llama.cpp's converter
//     writes them;
//   - token types: special added tokens control (3), the other added tokens user-defined
//     (4), the rest normal (1), which the reader above turns back into the same added tokens;
//   - the merges as "a b";
//   - tokenizer.ggml.pre, llama.cpp's name for the split before the byte alphabet: GPT-2's
//     own (ByteLevel with its regex) "gpt-2", digits split apart before it "smollm", a
//     Split by one of known_splits()'s expressions that expression's usual name (llama-bpe,
//     qwen2, ...). Any other pre-tokenizer is refused: llama.cpp would cut text into other
//     words than the folder's tokenizer does, and so into other ids;
//   - no normalizer or NFC (which llama.cpp leaves out too, as its converter does for Qwen).
// SentencePiece-style vocabularies (byte fallback: Llama 2, Mistral 7B, Gemma, Phi-3):
//   - tokenizer.ggml.model "llama"; the tokens as they are, with byte tokens "<0xNN>" typed
//     byte (6) and the unknown token unknown (2);
//   - scores, which llama.cpp's SentencePiece tokenizer merges by (the adjacent pair whose
//     merged token scores highest first): minus the rank of the first merge that makes the
//     token, so that it merges in the order of tokenizer.json's merges; a token no merge
//     makes scores below all of them;
//   - spaces as \u2581 (a Replace normalizer, or a Metaspace pre-tokenizer), and
//     add_space_prefix when one is put before the text (Prepend, or Metaspace's prepend
//     scheme); other normalizers and pre-tokenizers are refused.
// Both: bos, eos, unknown and padding ids as ft's Tokenizer reads them
// (tokenizer_config.json, then special_tokens_map.json); add_bos_token/add_eos_token as its
// post-processor puts them around a text (a template that adds anything else is refused);
// the chat template, and the tool-use one as tokenizer.chat_template.tool_use.

// llama.cpp's name for the pre-tokenizer of a byte-level BPE tokenizer.json, or "" when it
// has none.
std::string llama_cpp_pre_name(const nlohmann::json& pre) {
  using json = nlohmann::json;
  auto is = [](const json& j, const char* type) {
    return j.is_object() && j.value("type", std::string()) == type;
  };
  auto byte_level_with = [&](const json& j, bool regex) {
    return is(j, "ByteLevel") && j.value("use_regex", true) == regex &&
           !j.value("add_prefix_space", false);
  };
  if (byte_level_with(pre, true)) return "gpt-2";
  if (!is(pre, "Sequence") || !pre.contains("pretokenizers")) return "";
  const json& parts = pre["pretokenizers"];
  if (!parts.is_array() || parts.size() != 2) return "";
  if (is(parts[0], "Digits") && parts[0].value("individual_digits", false) &&
      byte_level_with(parts[1], true))
    return "smollm";
  const json& split = parts[0];
  if (!is(split, "Split") || !byte_level_with(parts[1], false) ||
      split.value("behavior", std::string()) != "Isolated" || split.value("invert", false) ||
      !split.contains("pattern") || !split["pattern"].is_object() ||
      !split["pattern"].contains("Regex") || !split["pattern"]["Regex"].is_string())
    return "";
  const std::string regex = split["pattern"]["Regex"].get<std::string>();
  for (const char* name : {"llama-bpe", "qwen2", "qwen35", "gpt-4o", "tekken"})
    if (known_splits().at(name) == regex) return name;
  return "";
}

// Whether a SentencePiece-style tokenizer.json spells spaces as llama.cpp's SentencePiece
// tokenizer does (" " as \u2581), and then whether it puts one before the text
// (add_space_prefix); nullopt for other normalizers and pre-tokenizers.
std::optional<bool> sentencepiece_space_prefix(const nlohmann::json& t) {
  using json = nlohmann::json;
  auto is = [](const json& j, const char* type) {
    return j.is_object() && j.value("type", std::string()) == type;
  };
  auto literal = [](const json& j, const char* key) {
    return j.contains(key) && j[key].is_object() && j[key].contains("String") &&
                   j[key]["String"].is_string()
               ? j[key]["String"].get<std::string>()
               : std::string("\x01");
  };
  const json normalizer = t.value("normalizer", json());
  const json pre = t.value("pre_tokenizer", json());
  if (normalizer.is_null()) {
    // Metaspace: the spaces spelled by the pre-tokenizer.
    if (!is(pre, "Metaspace") || pre.value("replacement", std::string()) != kMetaspace)
      return std::nullopt;
    const std::string scheme = pre.value("prepend_scheme", std::string("always"));
    if (scheme != "first" && scheme != "always" && scheme != "never") return std::nullopt;
    return scheme != "never";
  }
  // Replace(" ", "\u2581"), perhaps with Prepend("\u2581"), and no pre-tokenizer but a split
  // at spaces, of which none are left.
  std::vector<json> steps;
  if (is(normalizer, "Sequence") && normalizer.contains("normalizers") &&
      normalizer["normalizers"].is_array()) {
    for (const auto& n : normalizer["normalizers"]) steps.push_back(n);
  } else {
    steps.push_back(normalizer);
  }
  bool replace = false, prepend = false;
  for (const json& n : steps) {
    if (is(n, "Replace") && literal(n, "pattern") == " " &&
        n.value("content", std::string()) == kMetaspace) {
      replace = true;
    } else if (is(n, "Prepend") && n.value("prepend", std::string()) == kMetaspace) {
      prepend = true;
    } else {
      return std::nullopt;
    }
  }
  const bool split_at_spaces = is(pre, "Split") && literal(pre, "pattern") == " ";
  if (!replace || !(pre.is_null() || split_at_spaces)) return std::nullopt;
  return prepend;
}

// SentencePiece's byte tokens, "<0x00>" to "<0xFF>".
bool is_byte_token(const std::string& token) {
  return token.size() == 6 && token.starts_with("<0x") && token.back() == '>' &&
         std::isxdigit(static_cast<unsigned char>(token[3])) &&
         std::isxdigit(static_cast<unsigned char>(token[4]));
}

}  // namespace

TokenizerFiles gguf_tokenizer_files(const GgufFile& g) {
  const std::string file = g.path.string();
  const std::string model = g.at("tokenizer.ggml.model").as_string();
  const GgufValue* arch = g.find("general.architecture");
  const std::string architecture = arch ? arch->as_string() : "";
  const bool byte_level_bpe = model == "gpt2";
  FT_CHECK(byte_level_bpe || model == "llama", kPlace, file, ": tokenizer.ggml.model '", model,
           "' is not converted (ft reads \"gpt2\", byte-level BPE, and \"llama\", "
           "SentencePiece-style BPE)");
  FT_CHECK(byte_level_bpe || (architecture.rfind("gemma", 0) != 0 && architecture != "phi3"),
           kPlace, file, ": the SentencePiece vocabulary of a '", architecture,
           "' model is not converted (its spelling of spaces differs)");
  const std::vector<std::string> tokens = strings_of(g, "tokenizer.ggml.tokens");
  std::vector<int64_t> types(tokens.size(), 1);
  if (g.find("tokenizer.ggml.token_type")) types = ints_of(g, "tokenizer.ggml.token_type");
  FT_CHECK(types.size() == tokens.size(), kPlace, file, ": ", types.size(), " token types for ",
           tokens.size(), " tokens");
  auto special_id = [&](const char* key) -> std::optional<int64_t> {
    const GgufValue* v = g.find(std::string("tokenizer.ggml.") + key);
    if (!v) return std::nullopt;
    const int64_t id = v->as_int();
    FT_CHECK(id >= 0 && id < int64_t(tokens.size()), kPlace, file, ": tokenizer.ggml.", key, " ",
             id, " is not a token id (", tokens.size(), " tokens)");
    return id;
  };

  // Note [GGUF tokenizers]: the vocabulary, spelled for the model.
  std::set<uint32_t> alphabet(byte_alphabet().begin(), byte_alphabet().end());
  auto spelled = [&](const std::string& t) {
    return byte_level_bpe ? byte_level_spelling(t, alphabet) : t;
  };
  // Built on the object's entries: ordered_json's operator[] searches them one by one.
  json vocab = json::object();
  auto& entries = vocab.get_ref<json::object_t&>();
  std::unordered_map<std::string, size_t> entry_of;
  for (size_t i = 0; i < tokens.size(); ++i) {
    std::string token = spelled(tokens[i]);
    auto [it, fresh] = entry_of.emplace(token, entries.size());
    if (fresh) {
      entries.emplace_back(std::move(token), int64_t(i));
    } else {
      (entries.begin() + ptrdiff_t(it->second))->second =
          int64_t(i);  // a later duplicate's id, as in a dict
    }
  }
  json merge_pairs = json::array();
  if (g.find("tokenizer.ggml.merges")) {
    for (const auto& m : strings_of(g, "tokenizer.ggml.merges")) {
      const size_t space = m.find(' ');
      FT_CHECK(space != std::string::npos && m.find(' ', space + 1) == std::string::npos, kPlace,
               file, ": merge '", m, "' is not two tokens");
      merge_pairs.push_back({m.substr(0, space), m.substr(space + 1)});
    }
  } else {
    FT_CHECK(!byte_level_bpe, kPlace, file,
             ": a byte-level BPE vocabulary needs "
             "tokenizer.ggml.merges");
    FT_CHECK(g.find("tokenizer.ggml.scores"), kPlace, file,
             ": without tokenizer.ggml.merges the merges come from tokenizer.ggml.scores, "
             "which is missing");
    std::vector<double> scores;
    for (const auto& v : g.at("tokenizer.ggml.scores").as_array().items)
      scores.push_back(v.as_float());
    FT_CHECK(scores.size() == tokens.size(), kPlace, file, ": ", scores.size(), " scores for ",
             tokens.size(), " tokens");
    for (auto& [a, b] : sentencepiece_merges(tokens, scores)) merge_pairs.push_back({a, b});
  }

  // Special: control tokens (those a byte-level vocabulary spells in its alphabet) and the
  // tokens the file names; plain added: user-defined tokens.
  std::set<int64_t> special;
  for (const char* key : {"bos_token_id", "eos_token_id", "unknown_token_id", "padding_token_id"})
    if (auto id = special_id(key)) special.insert(*id);
  json added = json::array();
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (special.count(int64_t(i)) || (types[i] == 3 && spelled(tokens[i]) == tokens[i]))
      added.push_back(added_token(int(i), tokens[i], true));
    else if (types[i] == 4 && vocab.contains(tokens[i]))
      added.push_back(added_token(int(i), tokens[i], false));
  }

  json pre, decoder;
  if (byte_level_bpe) {
    pre = byte_level(true, false);
    if (const GgufValue* name = g.find("tokenizer.ggml.pre")) {
      auto it = known_splits().find(name->as_string());
      if (it != known_splits().end())
        pre = json{{"type", "Sequence"},
                   {"pretokenizers",
                    {json{{"type", "Split"},
                          {"pattern", {{"Regex", it->second}}},
                          {"behavior", "Isolated"},
                          {"invert", false}},
                     byte_level(false, false)}}};
    }
    decoder = byte_level(true, true);
  } else {
    pre = {{"type", "Metaspace"},
           {"replacement", kMetaspace},
           {"prepend_scheme", "first"},
           {"split", false}};
    decoder = {{"type", "Sequence"},
               {"decoders",
                {json{{"type", "Replace"}, {"pattern", {{"String", kMetaspace}}}, {"content", " "}},
                 json{{"type", "ByteFallback"}}, json{{"type", "Fuse"}},
                 json{{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}}}};
  }
  // A SentencePiece vocabulary without the flag gets BOS, as llama.cpp and transformers do.
  const bool add_bos = flag(g, "tokenizer.ggml.add_bos_token", !byte_level_bpe);
  const bool add_eos = flag(g, "tokenizer.ggml.add_eos_token", false);
  const auto bos = special_id("bos_token_id"), eos = special_id("eos_token_id");
  FT_CHECK(!add_bos || bos, kPlace, file, ": add_bos_token is set without a bos_token_id");
  FT_CHECK(!add_eos || eos, kPlace, file, ": add_eos_token is set without an eos_token_id");
  const json affix = byte_level_bpe ? json("") : json(nullptr);

  json tokenizer = {
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"added_tokens", added},
      {"normalizer", nullptr},
      {"pre_tokenizer", pre},
      {"post_processor",
       bos_eos_template(tokens, add_bos ? bos : std::nullopt, add_eos ? eos : std::nullopt)},
      {"decoder", decoder},
      {"model",
       {{"type", "BPE"},
        {"dropout", nullptr},
        {"unk_token", nullptr},
        {"continuing_subword_prefix", affix},
        {"end_of_word_suffix", affix},
        {"fuse_unk", !byte_level_bpe},
        {"byte_fallback", !byte_level_bpe},
        {"ignore_merges", false},
        {"vocab", vocab},
        {"merges", merge_pairs}}},
  };
  json config = {{"add_bos_token", add_bos}, {"add_eos_token", add_eos}};
  for (const auto& [name, key] : {std::pair{"bos_token", "bos_token_id"},
                                  {"eos_token", "eos_token_id"},
                                  {"unk_token", "unknown_token_id"},
                                  {"pad_token", "padding_token_id"}})
    if (auto id = special_id(key)) config[name] = tokens[size_t(*id)];
  if (const GgufValue* t = g.find("tokenizer.chat_template"))
    config["chat_template"] = t->as_string();
  return {tokenizer.dump(), config.dump()};
}

tokenizer::Tokenizer gguf_tokenizer(const TokenizerFiles& files, const std::string& source) {
  return tokenizer::Tokenizer::from_json_text(files.tokenizer_json, files.tokenizer_config_json, {},
                                              {}, source);
}

tokenizer::Tokenizer gguf_tokenizer(const GgufFile& g) {
  return gguf_tokenizer(gguf_tokenizer_files(g), g.path.string());
}

std::optional<chat::ChatTemplate> gguf_chat_template(const TokenizerFiles& files) {
  const json config = json::parse(files.tokenizer_config_json);
  if (!config.contains("chat_template")) return std::nullopt;
  json variables = json::object();
  for (const char* key : {"bos_token", "eos_token", "unk_token", "pad_token"})
    if (config.contains(key)) variables[key] = config[key];
  return chat::ChatTemplate::from_string(config["chat_template"].get<std::string>(), variables);
}

std::vector<std::pair<std::string, GgufValue>> gguf_tokenizer_metadata(const fs::path& folder,
                                                                       int64_t vocab_size) {
  // Note [GGUF tokenizers out]
  using json = nlohmann::json;  // unordered: the vocabulary is large
  const tokenizer::Tokenizer tok = tokenizer::Tokenizer::from_dir(folder);
  fs::path file = folder / "tokenizer.json";
  if (!fs::exists(file)) file = folder / "tokenizer.json.gz";
  const std::string where = file.string();
  json t;
  try {
    t = json::parse(tokenizer::read_tokenizer_file(file));
  } catch (const json::exception& e) {
    throw Error(kPlace, where + ": not valid JSON: " + e.what());
  }
  const json& model = t["model"];
  FT_CHECK(model.value("type", std::string()) == "BPE", kPlace, where,
           ": only BPE vocabularies (byte-level or SentencePiece-style) are written to GGUF; "
           "this one is a ",
           model.value("type", std::string("?")), " vocabulary");
  const bool sentencepiece = model.value("byte_fallback", false);
  std::string pre;
  bool space_prefix = false;
  if (sentencepiece) {
    const std::optional<bool> prefix = sentencepiece_space_prefix(t);
    FT_CHECK(prefix.has_value(), kPlace, where, ": normalizer ",
             t.value("normalizer", json()).dump(), " and pre-tokenizer ",
             t.value("pre_tokenizer", json()).dump(),
             " are not SentencePiece's spaces as llama.cpp writes them (\u2581 for a space, "
             "perhaps one before the text)");
    space_prefix = *prefix;
  } else {
    pre = llama_cpp_pre_name(t.value("pre_tokenizer", json()));
    FT_CHECK(!pre.empty(), kPlace, where, ": pre-tokenizer ",
             t.value("pre_tokenizer", json()).dump(),
             " has no llama.cpp name (GPT-2's, digits apart, or the Llama 3, Qwen, GPT-4o and "
             "tekken splits)");
    const json& normalizer = t.value("normalizer", json());
    FT_CHECK(normalizer.is_null() || normalizer.value("type", std::string()) == "NFC", kPlace,
             where, ": normalizer ", normalizer.dump(), " is not applied by llama.cpp");
  }
  const int64_t n = tok.vocab_size();
  FT_CHECK(n <= vocab_size, kPlace, where, ": the tokenizer has ", n,
           " tokens, more than the model's ", vocab_size, " embedding rows");

  std::set<int64_t> user_defined;
  if (t.contains("added_tokens") && t["added_tokens"].is_array())
    for (const auto& a : t["added_tokens"])
      if (!a.value("special", false)) user_defined.insert(a.value("id", int64_t(-1)));
  GgufArray tokens{GgufValueType::String, {}}, types{GgufValueType::Int32, {}};
  for (int64_t id = 0; id < vocab_size; ++id) {
    const std::optional<std::string> token = id < n ? tok.id_to_token(int(id)) : std::nullopt;
    int32_t type = 1;
    if (!token)
      type = 5;
    else if (sentencepiece && tok.unk_token() && tok.unk_token()->id == id)
      type = 2;
    else if (tok.is_special(int(id)))
      type = 3;
    else if (user_defined.count(id))
      type = 4;
    else if (sentencepiece && is_byte_token(*token))
      type = 6;
    tokens.items.push_back({token ? *token : "[PAD" + std::to_string(id) + "]"});
    types.items.push_back({type});
  }
  GgufArray merges{GgufValueType::String, {}};
  if (model.contains("merges") && model["merges"].is_array()) {
    for (const auto& m : model["merges"]) {
      if (m.is_string()) {
        merges.items.push_back({m.get<std::string>()});
      } else {
        FT_CHECK(m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string(), kPlace,
                 where, ": merge ", m.dump(), " is not two tokens");
        merges.items.push_back({m[0].get<std::string>() + " " + m[1].get<std::string>()});
      }
    }
  }
  // SentencePiece merges by the score of the merged token: minus the rank of its first merge
  // (Note [GGUF tokenizers out]).
  GgufArray scores{GgufValueType::Float32, {}};
  if (sentencepiece) {
    std::unordered_map<std::string, size_t> rank;
    for (size_t r = 0; r < merges.items.size(); ++r) {
      std::string merged = merges.items[r].as_string();
      const size_t space = merged.find(' ');
      FT_CHECK(space != std::string::npos && merged.find(' ', space + 1) == std::string::npos,
               kPlace, where, ": merge '", merged, "' is not two tokens");
      merged.erase(space, 1);
      rank.emplace(std::move(merged), r);
    }
    const float unmerged = -float(merges.items.size() + 1);
    for (const GgufValue& token : tokens.items) {
      auto it = rank.find(token.as_string());
      scores.items.push_back({it == rank.end() ? unmerged : -float(it->second)});
    }
  }

  std::vector<std::pair<std::string, GgufValue>> out;
  auto add = [&](const std::string& key, GgufValue v) { out.emplace_back(key, std::move(v)); };
  if (sentencepiece) {
    add("tokenizer.ggml.model", {std::string("llama")});
    add("tokenizer.ggml.tokens", {std::move(tokens)});
    add("tokenizer.ggml.scores", {std::move(scores)});
    add("tokenizer.ggml.token_type", {std::move(types)});
    add("tokenizer.ggml.add_space_prefix", {space_prefix});
  } else {
    add("tokenizer.ggml.model", {std::string("gpt2")});
    add("tokenizer.ggml.pre", {pre});
    add("tokenizer.ggml.tokens", {std::move(tokens)});
    add("tokenizer.ggml.token_type", {std::move(types)});
    add("tokenizer.ggml.merges", {std::move(merges)});
  }
  for (const auto& [key, special] : {std::pair{"bos_token_id", &tok.bos_token()},
                                     {"eos_token_id", &tok.eos_token()},
                                     {"unknown_token_id", &tok.unk_token()},
                                     {"padding_token_id", &tok.pad_token()}})
    if (*special) add(std::string("tokenizer.ggml.") + key, {uint32_t((*special)->id)});
  // What the post-processor puts around a text: BOS before, EOS after, or nothing.
  const std::string probe = "a";
  const std::vector<int> plain = tok.encode(probe, false), full = tok.encode(probe, true);
  const auto at = std::search(full.begin(), full.end(), plain.begin(), plain.end());
  FT_CHECK(!plain.empty() && at != full.end(), kPlace, where,
           ": the post-processor changes the text's own ids");
  const std::vector<int> before(full.begin(), at), after(at + plain.size(), full.end());
  auto only = [](const std::vector<int>& ids, const std::optional<tokenizer::SpecialToken>& s) {
    return ids.empty() || (s && ids == std::vector<int>{s->id});
  };
  FT_CHECK(only(before, tok.bos_token()) && only(after, tok.eos_token()), kPlace, where,
           ": the post-processor adds tokens other than BOS before and EOS after a text, which "
           "llama.cpp cannot");
  add("tokenizer.ggml.add_bos_token", {!before.empty()});
  add("tokenizer.ggml.add_eos_token", {!after.empty()});

  if (const auto chat = chat::ChatTemplate::from_tokenizer_dir_if_any(folder)) {
    add("tokenizer.chat_template", {chat->source(false)});
    const std::vector<std::string> names = chat->names();
    if (std::find(names.begin(), names.end(), "tool_use") != names.end())
      add("tokenizer.chat_template.tool_use", {chat->source(true)});
  }
  return out;
}

}  // namespace ft::io
