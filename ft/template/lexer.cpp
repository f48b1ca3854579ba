#include "ft/template/lexer.h"

#include <algorithm>
#include <cstring>

#include "ft/core/error.h"
#include "ft/template/value.h"

namespace ft::jinja {

void syntax_error(int line, int column, const std::string& message) {
  throw Error("template", "line " + std::to_string(line) + ", column " + std::to_string(column) +
                              ": " + message);
}

namespace {

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

// Python's "unicode-escape" decoding, which Jinja applies to string literals;
// unknown escapes keep their backslash.
std::string unescape(const std::string& raw, int line, int column) {
  std::string out;
  for (size_t i = 0; i < raw.size(); ++i) {
    if (raw[i] != '\\' || i + 1 == raw.size()) {
      out += raw[i];
      continue;
    }
    char c = raw[++i];
    auto hex = [&](size_t n) {
      std::string digits = raw.substr(i + 1, n);
      if (digits.size() != n || !std::all_of(digits.begin(), digits.end(), ::isxdigit))
        syntax_error(line, column, "truncated \\x, \\u or \\U escape in string");
      i += n;
      return static_cast<char32_t>(std::stoul(digits, nullptr, 16));
    };
    switch (c) {
      case 'n':
        out += '\n';
        break;
      case 't':
        out += '\t';
        break;
      case 'r':
        out += '\r';
        break;
      case '\\':
        out += '\\';
        break;
      case '\'':
        out += '\'';
        break;
      case '"':
        out += '"';
        break;
      case 'a':
        out += '\a';
        break;
      case 'b':
        out += '\b';
        break;
      case 'f':
        out += '\f';
        break;
      case 'v':
        out += '\v';
        break;
      case '\n':
        break;  // line continuation
      case 'x':
        out += utf8_encode(hex(2));
        break;
      case 'u':
        out += utf8_encode(hex(4));
        break;
      case 'U':
        out += utf8_encode(hex(8));
        break;
      default:
        if (c >= '0' && c <= '7') {
          int v = 0, n = 0;
          for (; n < 3 && i < raw.size() && raw[i] >= '0' && raw[i] <= '7'; ++n, ++i)
            v = v * 8 + (raw[i] - '0');
          --i;
          out += utf8_encode(static_cast<char32_t>(v));
        } else {
          out += '\\';
          out += c;
        }
    }
  }
  return out;
}

class Lexer {
 public:
  explicit Lexer(std::string source) : src_(std::move(source)) {}

  std::vector<Token> run() {
    size_t pos = 0;
    bool strip_next = false;  // a `-` closed the previous tag
    while (pos < src_.size()) {
      size_t open = find_tag(pos);
      std::string text =
          src_.substr(pos, open == std::string::npos ? std::string::npos : open - pos);
      if (strip_next) {
        size_t k = 0;
        while (k < text.size() && is_space(text[k])) ++k;
        text.erase(0, k);
      }
      if (open == std::string::npos) {
        emit_text(text, pos);
        break;
      }
      char kind = src_[open + 1];  // '{', '%' or '#'
      char marker = open + 2 < src_.size() ? src_[open + 2] : '\0';
      if (marker == '-') {
        while (!text.empty() && is_space(text.back())) text.pop_back();
      } else if (marker != '+' && kind != '{') {
        lstrip_block(text, pos);
      }
      emit_text(text, pos);
      size_t body = open + 2 + ((marker == '-' || marker == '+') ? 1 : 0);
      if (kind == '#') {
        size_t close = src_.find("#}", body);
        if (close == std::string::npos) error_at(open, "unterminated comment");
        strip_next = close > body && src_[close - 1] == '-';
        pos = close + 2;
        if (!strip_next) pos = trim_newline(pos);
        continue;
      }
      bool block = kind == '%';
      push(block ? Token::Type::BlockBegin : Token::Type::VarBegin, "", open);
      size_t start_index = tokens_.size();
      char end_marker = '\0';
      pos = lex_expression(body, block ? '%' : '}', end_marker);
      strip_next = end_marker == '-';
      if (block && end_marker != '+' && !strip_next) pos = trim_newline(pos);
      if (block && tokens_.size() == start_index + 2 && tokens_[start_index].value == "raw" &&
          tokens_[start_index].type == Token::Type::Name) {
        tokens_.resize(start_index - 1);
        pos = lex_raw(pos, strip_next);
        strip_next = false;
      }
    }
    push(Token::Type::End, "", src_.size());
    return std::move(tokens_);
  }

 private:
  size_t find_tag(size_t pos) const {
    for (size_t i = src_.find('{', pos); i != std::string::npos; i = src_.find('{', i + 1))
      if (i + 1 < src_.size() && (src_[i + 1] == '{' || src_[i + 1] == '%' || src_[i + 1] == '#'))
        return i;
    return std::string::npos;
  }

  // lstrip_blocks: spaces and tabs before a block or comment tag go when nothing
  // else precedes the tag on its line.
  void lstrip_block(std::string& text, size_t text_pos) const {
    size_t nl = text.rfind('\n');
    size_t line_start = nl == std::string::npos ? 0 : nl + 1;
    bool starts_line = nl != std::string::npos || text_pos == 0 || src_[text_pos - 1] == '\n';
    if (!starts_line) return;
    for (size_t k = line_start; k < text.size(); ++k)
      if (text[k] != ' ' && text[k] != '\t') return;
    text.erase(line_start);
  }

  size_t trim_newline(size_t pos) const {
    return pos < src_.size() && src_[pos] == '\n' ? pos + 1 : pos;
  }

  void emit_text(const std::string& text, size_t pos) {
    if (!text.empty()) push(Token::Type::Text, text, pos);
  }

  void push(Token::Type type, std::string value, size_t offset) {
    auto [line, column] = location(offset);
    tokens_.push_back({type, std::move(value), line, column});
  }

  // Line and column (in characters), both from 1. Offsets mostly grow, so the
  // scan continues from the last answer.
  std::pair<int, int> location(size_t offset) const {
    if (offset < loc_offset_) loc_offset_ = 0, loc_line_ = 1, loc_column_ = 1;
    for (; loc_offset_ < offset && loc_offset_ < src_.size(); ++loc_offset_) {
      if (src_[loc_offset_] == '\n') {
        ++loc_line_;
        loc_column_ = 1;
      } else if ((static_cast<unsigned char>(src_[loc_offset_]) & 0xC0) != 0x80) {
        ++loc_column_;
      }
    }
    return {loc_line_, loc_column_};
  }

  [[noreturn]] void error_at(size_t offset, const std::string& message) const {
    auto [line, column] = location(offset);
    syntax_error(line, column, message);
  }

  // Lexes tokens up to the closing `%}` or `}}`; returns the offset after it.
  size_t lex_expression(size_t pos, char close, char& end_marker) {
    static const char* two_char_ops[] = {"**", "//", "==", "!=", "<=", ">="};
    int depth = 0;  // open brackets: `}}` inside `{'a': {'b': 1}}` does not end the tag
    while (true) {
      while (pos < src_.size() && is_space(src_[pos])) ++pos;
      if (pos >= src_.size())
        error_at(pos, close == '%' ? "unexpected end of template, expected '%}'"
                                   : "unexpected end of template, expected '}}'");
      char c = src_[pos];
      char next = pos + 1 < src_.size() ? src_[pos + 1] : '\0';
      char after = pos + 2 < src_.size() ? src_[pos + 2] : '\0';
      if (depth == 0 && (c == '-' || c == '+') && next == close && after == '}') {
        end_marker = c;
        push(close == '%' ? Token::Type::BlockEnd : Token::Type::VarEnd, "", pos);
        return pos + 3;
      }
      if (depth == 0 && c == close && next == '}') {
        end_marker = '\0';
        push(close == '%' ? Token::Type::BlockEnd : Token::Type::VarEnd, "", pos);
        return pos + 2;
      }
      if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
        size_t end = pos;
        while (end < src_.size() &&
               (std::isalnum(static_cast<unsigned char>(src_[end])) || src_[end] == '_'))
          ++end;
        push(Token::Type::Name, src_.substr(pos, end - pos), pos);
        pos = end;
      } else if (std::isdigit(static_cast<unsigned char>(c))) {
        pos = lex_number(pos);
      } else if (c == '\'' || c == '"') {
        size_t end = pos + 1;
        while (end < src_.size() && src_[end] != c) end += src_[end] == '\\' ? 2 : 1;
        if (end >= src_.size()) error_at(pos, "unterminated string");
        auto [line, column] = location(pos);
        tokens_.push_back({Token::Type::String,
                           unescape(src_.substr(pos + 1, end - pos - 1), line, column), line,
                           column});
        pos = end + 1;
      } else {
        std::string op;
        for (const char* two : two_char_ops)
          if (src_.compare(pos, 2, two) == 0) op = two;
        if (op.empty() && std::strchr("+-*/%~()[]{},.:|=<>", c)) op = std::string(1, c);
        if (op.empty()) error_at(pos, std::string("unexpected character '") + c + "'");
        if (op == "(" || op == "[" || op == "{") ++depth;
        if ((op == ")" || op == "]" || op == "}") && depth > 0) --depth;
        push(Token::Type::Op, op, pos);
        pos += op.size();
      }
    }
  }

  size_t lex_number(size_t pos) {
    auto digits = [&](size_t p) {
      while (p < src_.size() &&
             (std::isdigit(static_cast<unsigned char>(src_[p])) || src_[p] == '_'))
        ++p;
      return p;
    };
    size_t end = digits(pos);
    bool after_dot =
        !tokens_.empty() && tokens_.back().type == Token::Type::Op && tokens_.back().value == ".";
    bool is_float = false;
    if (!after_dot) {
      if (end + 1 < src_.size() && src_[end] == '.' &&
          std::isdigit(static_cast<unsigned char>(src_[end + 1]))) {
        end = digits(end + 1);
        is_float = true;
      }
      if (end < src_.size() && (src_[end] == 'e' || src_[end] == 'E')) {
        size_t p = end + 1;
        if (p < src_.size() && (src_[p] == '+' || src_[p] == '-')) ++p;
        if (p < src_.size() && std::isdigit(static_cast<unsigned char>(src_[p]))) {
          end = digits(p);
          is_float = true;
        }
      }
    }
    std::string text = src_.substr(pos, end - pos);
    text.erase(std::remove(text.begin(), text.end(), '_'), text.end());
    push(is_float ? Token::Type::Float : Token::Type::Int, text, pos);
    return end;
  }

  // {% raw %}...{% endraw %}: the text between is output as written.
  size_t lex_raw(size_t pos, bool strip_start) {
    for (size_t i = find_tag(pos); i != std::string::npos; i = find_tag(i + 1)) {
      if (src_[i + 1] != '%') continue;
      size_t p = i + 2;
      bool strip_end = p < src_.size() && src_[p] == '-';
      if (strip_end || (p < src_.size() && src_[p] == '+')) ++p;
      while (p < src_.size() && is_space(src_[p])) ++p;
      if (src_.compare(p, 6, "endraw") != 0) continue;
      p += 6;
      while (p < src_.size() && is_space(src_[p])) ++p;
      bool strip_after = p < src_.size() && src_[p] == '-';
      if (strip_after) ++p;
      if (src_.compare(p, 2, "%}") != 0) continue;
      std::string text = src_.substr(pos, i - pos);
      if (strip_start)
        text.erase(0, text.find_first_not_of(" \t\n\r\f\v") == std::string::npos
                          ? text.size()
                          : text.find_first_not_of(" \t\n\r\f\v"));
      if (strip_end)
        while (!text.empty() && is_space(text.back())) text.pop_back();
      else if (src_[i + 2] != '+')
        lstrip_block(text, pos);
      emit_text(text, pos);
      p += 2;
      if (strip_after) {
        while (p < src_.size() && is_space(src_[p])) ++p;
        return p;
      }
      return trim_newline(p);
    }
    error_at(pos, "missing {% endraw %}");
  }

  std::string src_;
  std::vector<Token> tokens_;
  mutable size_t loc_offset_ = 0;
  mutable int loc_line_ = 1;
  mutable int loc_column_ = 1;
};

}  // namespace

std::vector<Token> tokenize(const std::string& source) {
  // Jinja reads "\r\n" and "\r" as "\n" and drops one final newline
  // (keep_trailing_newline=False).
  std::string src;
  src.reserve(source.size());
  for (size_t i = 0; i < source.size(); ++i) {
    if (source[i] == '\r') {
      src += '\n';
      if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
    } else {
      src += source[i];
    }
  }
  if (!src.empty() && src.back() == '\n') src.pop_back();
  return Lexer(std::move(src)).run();
}

}  // namespace ft::jinja
