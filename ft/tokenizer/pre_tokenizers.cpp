// Pre-tokenizers: Split, ByteLevel, Metaspace, Whitespace, WhitespaceSplit, Punctuation,
// Digits, BertPreTokenizer, CharDelimiterSplit, Sequence. The split behaviors follow the
// Hugging Face library's SplitDelimiterBehavior exactly.
#include <functional>

#include "ft/core/error.h"
#include "ft/core/regex.h"  // defines: Regex
#include "ft/tokenizer/components.h"
#include "ft/tokenizer/unicode.h"

namespace ft::tokenizer {
namespace {

enum class Behavior { removed, isolated, merged_with_previous, merged_with_next, contiguous };

Behavior parse_behavior(const json& j) {
  const std::string b = j.get<std::string>();
  if (b == "Removed") return Behavior::removed;
  if (b == "Isolated") return Behavior::isolated;
  if (b == "MergedWithPrevious") return Behavior::merged_with_previous;
  if (b == "MergedWithNext") return Behavior::merged_with_next;
  if (b == "Contiguous") return Behavior::contiguous;
  unsupported("split behavior", b);
}

struct Span {
  size_t begin, end;
  bool is_match;
};

// Spans covering text: the gaps between matches and the matches themselves.
void spans_from_matches(size_t size, const std::vector<std::pair<size_t, size_t>>& matches,
                        std::vector<Span>& spans) {
  size_t last = 0;
  for (auto [b, e] : matches) {
    if (b > last) spans.push_back({last, b, false});
    spans.push_back({b, e, true});
    last = e;
  }
  if (last < size) spans.push_back({last, size, false});
}

// Each character for which pred holds is one match.
void spans_from_chars(std::string_view text, const std::function<bool(char32_t)>& pred,
                      std::vector<Span>& spans) {
  size_t last = 0;
  for (size_t i = 0; i < text.size();) {
    const size_t at = i;
    if (pred(utf8_next(text, i))) {
      if (at > last) spans.push_back({last, at, false});
      spans.push_back({at, i, true});
      last = i;
    }
  }
  if (last < text.size()) spans.push_back({last, text.size(), false});
}

// Applies the behavior to the spans of one piece and appends the resulting pieces.
void emit(const Piece& piece, std::vector<Span>& spans, Behavior behavior, bool invert,
          std::vector<Piece>& out) {
  if (invert)
    for (auto& s : spans) s.is_match = !s.is_match;
  std::vector<Span> merged;
  switch (behavior) {
    case Behavior::isolated:
      merged = spans;
      break;
    case Behavior::removed:
      for (const auto& s : spans)
        if (!s.is_match) merged.push_back(s);
      break;
    case Behavior::merged_with_previous: {
      bool previous_match = false;
      for (const auto& s : spans) {
        if (s.is_match && !previous_match && !merged.empty())
          merged.back().end = s.end;
        else
          merged.push_back(s);
        previous_match = s.is_match;
      }
      break;
    }
    case Behavior::merged_with_next: {
      bool previous_match = false;
      for (auto it = spans.rbegin(); it != spans.rend(); ++it) {
        if (it->is_match && !previous_match && !merged.empty())
          merged.back().begin = it->begin;
        else
          merged.push_back(*it);
        previous_match = it->is_match;
      }
      std::reverse(merged.begin(), merged.end());
      break;
    }
    case Behavior::contiguous: {
      bool previous_match = false;
      for (const auto& s : spans) {
        if (s.is_match == previous_match && !merged.empty())
          merged.back().end = s.end;
        else
          merged.push_back(s);
        previous_match = s.is_match;
      }
      break;
    }
  }
  for (const auto& s : merged)
    if (s.end > s.begin)
      out.push_back({piece.text.substr(s.begin, s.end - s.begin), piece.at_start && s.begin == 0});
}

// A pre-tokenizer that splits each piece on its own by a span finder.
class SpanSplitter : public PreTokenizer {
 public:
  using Finder = std::function<void(std::string_view, std::vector<Span>&)>;
  SpanSplitter(Finder finder, Behavior behavior, bool invert)
      : finder_(std::move(finder)), behavior_(behavior), invert_(invert) {}
  void pre_tokenize(std::vector<Piece>& pieces) const override {
    std::vector<Piece> out;
    out.reserve(pieces.size() * 2);
    std::vector<Span> spans;
    for (const auto& piece : pieces) {
      spans.clear();
      finder_(piece.text, spans);
      emit(piece, spans, behavior_, invert_, out);
    }
    pieces = std::move(out);
  }

 private:
  Finder finder_;
  Behavior behavior_;
  bool invert_;
};

SpanSplitter::Finder regex_finder(std::shared_ptr<Regex> regex) {
  return [regex](std::string_view text, std::vector<Span>& spans) {
    thread_local std::vector<std::pair<size_t, size_t>> matches;
    matches.clear();
    regex->find_all(text, matches);
    spans_from_matches(text.size(), matches, spans);
  };
}

SpanSplitter::Finder literal_finder(std::string literal) {
  return [literal](std::string_view text, std::vector<Span>& spans) {
    std::vector<std::pair<size_t, size_t>> matches;
    if (!literal.empty())
      for (size_t at = text.find(literal); at != std::string_view::npos;
           at = text.find(literal, at + literal.size()))
        matches.emplace_back(at, at + literal.size());
    spans_from_matches(text.size(), matches, spans);
  };
}

SpanSplitter::Finder char_finder(std::function<bool(char32_t)> pred) {
  return [pred](std::string_view text, std::vector<Span>& spans) {
    spans_from_chars(text, pred, spans);
  };
}

std::unique_ptr<PreTokenizer> make_split(const json& j) {
  const Pattern p = parse_pattern(j.at("pattern"), "Split pre-tokenizer");
  auto finder =
      p.is_regex ? regex_finder(std::make_shared<Regex>(p.text, "tokenizer", Regex::Text::kUnicode))
                 : literal_finder(p.text);
  return std::make_unique<SpanSplitter>(finder, parse_behavior(j.at("behavior")),
                                        j.value("invert", false));
}

// GPT-2's split, used by ByteLevel with use_regex.
const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

class ByteLevelPreTokenizer : public PreTokenizer {
 public:
  explicit ByteLevelPreTokenizer(const json& j)
      : add_prefix_space_(j.value("add_prefix_space", true)) {
    if (j.value("use_regex", true))
      splitter_ = std::make_unique<SpanSplitter>(
          regex_finder(std::make_shared<Regex>(kGpt2Pattern, "tokenizer", Regex::Text::kUnicode)),
          Behavior::isolated, false);
  }
  void pre_tokenize(std::vector<Piece>& pieces) const override {
    if (add_prefix_space_)
      for (auto& p : pieces)
        if (p.text.empty() || p.text[0] != ' ') p.text.insert(0, 1, ' ');
    if (splitter_) splitter_->pre_tokenize(pieces);
    for (auto& p : pieces) {
      std::string mapped;
      mapped.reserve(p.text.size() * 2);
      for (unsigned char c : p.text) utf8_append(mapped, byte_to_char(c));
      p.text = std::move(mapped);
    }
  }

 private:
  bool add_prefix_space_;
  std::unique_ptr<SpanSplitter> splitter_;
};

enum class PrependScheme { always, first, never };

PrependScheme parse_prepend_scheme(const json& j) {
  if (j.contains("prepend_scheme")) {
    const std::string s = j["prepend_scheme"].get<std::string>();
    if (s == "always") return PrependScheme::always;
    if (s == "first") return PrependScheme::first;
    if (s == "never") return PrependScheme::never;
    unsupported("Metaspace prepend_scheme", s);
  }
  // Files older than prepend_scheme carry add_prefix_space instead.
  return j.value("add_prefix_space", true) ? PrependScheme::always : PrependScheme::never;
}

class MetaspacePreTokenizer : public PreTokenizer {
 public:
  explicit MetaspacePreTokenizer(const json& j)
      : replacement_(j.at("replacement").get<std::string>()),
        scheme_(parse_prepend_scheme(j)),
        split_(j.value("split", true)) {}
  void pre_tokenize(std::vector<Piece>& pieces) const override {
    std::vector<Piece> out;
    std::vector<Span> spans;
    for (auto& p : pieces) {
      std::string text;
      for (char c : p.text) {
        if (c == ' ')
          text += replacement_;
        else
          text += c;
      }
      const bool starts = text.compare(0, replacement_.size(), replacement_) == 0;
      if (!starts &&
          (scheme_ == PrependScheme::always || (scheme_ == PrependScheme::first && p.at_start)))
        text.insert(0, replacement_);
      Piece piece{std::move(text), p.at_start};
      if (!split_) {
        if (!piece.text.empty()) out.push_back(std::move(piece));
        continue;
      }
      spans.clear();
      literal_finder(replacement_)(piece.text, spans);
      // Each replacement character is its own match.
      emit(piece, spans, Behavior::merged_with_next, false, out);
    }
    pieces = std::move(out);
  }

 private:
  std::string replacement_;
  PrependScheme scheme_;
  bool split_;
};

class SequencePreTokenizer : public PreTokenizer {
 public:
  explicit SequencePreTokenizer(std::vector<std::unique_ptr<PreTokenizer>> parts)
      : parts_(std::move(parts)) {}
  void pre_tokenize(std::vector<Piece>& pieces) const override {
    for (const auto& p : parts_) p->pre_tokenize(pieces);
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> parts_;
};

}  // namespace

std::unique_ptr<PreTokenizer> make_pre_tokenizer(const json& j) {
  if (j.is_null()) return nullptr;
  const std::string type = json_type(j, "pre-tokenizer");
  if (type == "Split") return make_split(j);
  if (type == "ByteLevel") return std::make_unique<ByteLevelPreTokenizer>(j);
  if (type == "Metaspace") return std::make_unique<MetaspacePreTokenizer>(j);
  if (type == "Whitespace") {
    // \w as Oniguruma reads it in Unicode mode: letters, marks, decimal digits, connectors.
    auto re = std::make_shared<Regex>(R"([\p{L}\p{M}\p{Nd}\p{Pc}]+|[^\p{L}\p{M}\p{Nd}\p{Pc}\s]+)",
                                      "tokenizer", Regex::Text::kUnicode);
    return std::make_unique<SpanSplitter>(regex_finder(re), Behavior::removed, true);
  }
  if (type == "WhitespaceSplit")
    return std::make_unique<SpanSplitter>(char_finder(is_whitespace), Behavior::removed, false);
  if (type == "Punctuation") {
    const Behavior b = j.contains("behavior") ? parse_behavior(j["behavior"]) : Behavior::isolated;
    return std::make_unique<SpanSplitter>(char_finder(is_punctuation), b, false);
  }
  if (type == "Digits")
    return std::make_unique<SpanSplitter>(
        char_finder(is_numeric),
        j.value("individual_digits", false) ? Behavior::isolated : Behavior::contiguous, false);
  if (type == "CharDelimiterSplit") {
    const std::string d = j.at("delimiter").get<std::string>();
    size_t i = 0;
    const char32_t c = utf8_next(d, i);
    return std::make_unique<SpanSplitter>(char_finder([c](char32_t x) { return x == c; }),
                                          Behavior::removed, false);
  }
  if (type == "BertPreTokenizer") {
    std::vector<std::unique_ptr<PreTokenizer>> parts;
    parts.push_back(
        std::make_unique<SpanSplitter>(char_finder(is_whitespace), Behavior::removed, false));
    parts.push_back(
        std::make_unique<SpanSplitter>(char_finder(is_punctuation), Behavior::isolated, false));
    return std::make_unique<SequencePreTokenizer>(std::move(parts));
  }
  if (type == "Sequence") {
    std::vector<std::unique_ptr<PreTokenizer>> parts;
    for (const auto& p : sequence_parts(j, "pretokenizers", "pre-tokenizer"))
      parts.push_back(make_pre_tokenizer(p));
    return std::make_unique<SequencePreTokenizer>(std::move(parts));
  }
  unsupported("pre-tokenizer", type);
}

}  // namespace ft::tokenizer
