// Normalizers: NFC/NFD/NFKC/NFKD, Lowercase, Strip, StripAccents, Replace, Prepend,
// BertNormalizer, Sequence.
#include <vector>

#include "ft/core/error.h"
#include "ft/core/regex.h"  // defines: Regex
#include "ft/tokenizer/components.h"
#include "ft/tokenizer/unicode.h"

namespace ft::tokenizer {

[[noreturn]] void unsupported(const std::string& stage, const std::string& type) {
  throw Error("tokenizer", "unsupported " + stage + " type '" + type + "'");
}

std::string json_type(const json& j, const std::string& stage) {
  FT_CHECK(j.is_object() && j.contains("type") && j["type"].is_string(), "tokenizer", stage,
           " has no \"type\": ", j.dump().substr(0, 200));
  return j["type"].get<std::string>();
}

const json& sequence_parts(const json& j, const char* key, const std::string& stage) {
  FT_CHECK(j.contains(key) && j[key].is_array(), "tokenizer", "Sequence ", stage, " has no \"", key,
           "\" list");
  const json& parts = j[key];
  for (size_t i = 0; i < parts.size(); ++i)
    FT_CHECK(parts[i].is_object(), "tokenizer", "Sequence ", stage, ": element ", i, " of \"", key,
             "\" is ", parts[i].type_name(), ", not a ", stage);
  return parts;
}

Pattern parse_pattern(const json& j, const std::string& stage) {
  if (j.is_object() && j.contains("String")) return {j["String"].get<std::string>(), false};
  if (j.is_object() && j.contains("Regex")) return {j["Regex"].get<std::string>(), true};
  throw Error("tokenizer", stage + " has an unreadable pattern: " + j.dump());
}

namespace {

class FormNormalizer : public Normalizer {
 public:
  explicit FormNormalizer(NormalForm form) : form_(form) {}
  void normalize(std::string& text) const override {
    // Pure ASCII is already in every normal form.
    for (unsigned char c : text)
      if (c >= 0x80) {
        text = normalize_form(text, form_);
        return;
      }
  }

 private:
  NormalForm form_;
};

class LowercaseNormalizer : public Normalizer {
 public:
  void normalize(std::string& text) const override { text = to_lowercase(text); }
};

class StripNormalizer : public Normalizer {
 public:
  StripNormalizer(bool left, bool right) : left_(left), right_(right) {}
  bool drops_start(std::string_view text) const override {
    size_t i = 0;
    return left_ && !text.empty() && is_whitespace(utf8_next(text, i));
  }
  void normalize(std::string& text) const override {
    size_t begin = 0, end = text.size();
    if (left_) {
      while (begin < end) {
        size_t i = begin;
        if (!is_whitespace(utf8_next(text, i))) break;
        begin = i;
      }
    }
    if (right_) {
      while (end > begin) {
        size_t start = end - 1;
        while (start > begin && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) --start;
        size_t i = start;
        if (!is_whitespace(utf8_next(text, i))) break;
        end = start;
      }
    }
    text = text.substr(begin, end - begin);
  }

 private:
  bool left_, right_;
};

class StripAccentsNormalizer : public Normalizer {
 public:
  void normalize(std::string& text) const override {
    std::string out;
    for (size_t i = 0; i < text.size();) {
      const size_t at = i;
      if (!is_combining_mark(utf8_next(text, i))) out.append(text, at, i - at);
    }
    text = std::move(out);
  }
};

// Replaces every match of a literal string or a regex with content.
class Replacer {
 public:
  Replacer(const Pattern& pattern, std::string content)
      : pattern_(pattern.text), content_(std::move(content)) {
    if (pattern.is_regex)
      regex_ = std::make_unique<Regex>(pattern.text, "tokenizer", Regex::Text::kUnicode);
  }
  bool removes_start(std::string_view text) const {
    if (!content_.empty() || text.empty()) return false;
    if (!regex_) return !pattern_.empty() && text.substr(0, pattern_.size()) == pattern_;
    std::vector<std::pair<size_t, size_t>> matches;
    regex_->find_all(text, matches);
    return !matches.empty() && matches[0].first == 0;
  }
  void apply(std::string& text) const {
    std::vector<std::pair<size_t, size_t>> matches;
    if (regex_) {
      regex_->find_all(text, matches);
    } else if (!pattern_.empty()) {
      for (size_t at = text.find(pattern_); at != std::string::npos;
           at = text.find(pattern_, at + pattern_.size()))
        matches.emplace_back(at, at + pattern_.size());
    }
    if (matches.empty()) return;
    std::string out;
    size_t last = 0;
    for (auto [b, e] : matches) {
      out.append(text, last, b - last);
      out += content_;
      last = e;
    }
    out.append(text, last, std::string::npos);
    text = std::move(out);
  }

 private:
  std::string pattern_;
  std::string content_;
  std::unique_ptr<Regex> regex_;
};

class ReplaceNormalizer : public Normalizer {
 public:
  explicit ReplaceNormalizer(const json& j)
      : replacer_(parse_pattern(j.at("pattern"), "Replace normalizer"),
                  j.at("content").get<std::string>()) {}
  void normalize(std::string& text) const override { replacer_.apply(text); }
  bool drops_start(std::string_view text) const override { return replacer_.removes_start(text); }

 private:
  Replacer replacer_;
};

class PrependNormalizer : public Normalizer {
 public:
  explicit PrependNormalizer(std::string prepend) : prepend_(std::move(prepend)) {}
  void normalize(std::string& text) const override {
    if (!text.empty()) text.insert(0, prepend_);
  }

 private:
  std::string prepend_;
};

bool is_chinese_char(char32_t c) {
  return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
         (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B73F) ||
         (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
         (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

class BertNormalizer : public Normalizer {
 public:
  explicit BertNormalizer(const json& j) {
    clean_text_ = j.value("clean_text", true);
    chinese_chars_ = j.value("handle_chinese_chars", true);
    lowercase_ = j.value("lowercase", true);
    const json& sa = j.contains("strip_accents") ? j["strip_accents"] : json();
    strip_accents_ = sa.is_null() ? lowercase_ : sa.get<bool>();
  }
  bool drops_start(std::string_view text) const override {
    if (!clean_text_ || text.empty()) return false;
    size_t i = 0;
    const char32_t c = utf8_next(text, i);
    return c == 0 || c == 0xFFFD || (c != '\t' && c != '\n' && c != '\r' && is_control(c));
  }
  void normalize(std::string& text) const override {
    std::string out;
    out.reserve(text.size());
    for (size_t i = 0; i < text.size();) {
      const size_t at = i;
      const char32_t c = utf8_next(text, i);
      if (clean_text_) {
        if (c == 0 || c == 0xFFFD || (c != '\t' && c != '\n' && c != '\r' && is_control(c)))
          continue;
        if (c == '\t' || c == '\n' || c == '\r' || is_whitespace(c)) {
          out += ' ';
          continue;
        }
      }
      if (chinese_chars_ && is_chinese_char(c)) {
        out += ' ';
        out.append(text, at, i - at);
        out += ' ';
        continue;
      }
      out.append(text, at, i - at);
    }
    if (strip_accents_) {
      out = normalize_form(out, NormalForm::nfd);
      StripAccentsNormalizer().normalize(out);
    }
    if (lowercase_) out = to_lowercase(out);
    text = std::move(out);
  }

 private:
  bool clean_text_, chinese_chars_, lowercase_, strip_accents_;
};

class SequenceNormalizer : public Normalizer {
 public:
  explicit SequenceNormalizer(std::vector<std::unique_ptr<Normalizer>> parts)
      : parts_(std::move(parts)) {}
  void normalize(std::string& text) const override {
    for (const auto& p : parts_) p->normalize(text);
  }
  bool drops_start(std::string_view text) const override {
    std::string current(text);
    for (const auto& p : parts_) {
      if (p->drops_start(current)) return true;
      p->normalize(current);
    }
    return false;
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> parts_;
};

}  // namespace

std::unique_ptr<Normalizer> make_normalizer(const json& j) {
  if (j.is_null()) return nullptr;
  const std::string type = json_type(j, "normalizer");
  if (type == "NFC") return std::make_unique<FormNormalizer>(NormalForm::nfc);
  if (type == "NFD") return std::make_unique<FormNormalizer>(NormalForm::nfd);
  if (type == "NFKC") return std::make_unique<FormNormalizer>(NormalForm::nfkc);
  if (type == "NFKD") return std::make_unique<FormNormalizer>(NormalForm::nfkd);
  if (type == "Lowercase") return std::make_unique<LowercaseNormalizer>();
  if (type == "Strip")
    return std::make_unique<StripNormalizer>(j.value("strip_left", true),
                                             j.value("strip_right", true));
  if (type == "StripAccents") return std::make_unique<StripAccentsNormalizer>();
  if (type == "Replace") return std::make_unique<ReplaceNormalizer>(j);
  if (type == "Prepend") return std::make_unique<PrependNormalizer>(j.at("prepend"));
  if (type == "BertNormalizer") return std::make_unique<BertNormalizer>(j);
  if (type == "Sequence") {
    std::vector<std::unique_ptr<Normalizer>> parts;
    for (const auto& n : sequence_parts(j, "normalizers", "normalizer"))
      parts.push_back(make_normalizer(n));
    return std::make_unique<SequenceNormalizer>(std::move(parts));
  }
  unsupported("normalizer", type);
}

}  // namespace ft::tokenizer
