// Splits a Jinja template into text and the tokens inside {{ }} and {% %}, with the
// whitespace rules transformers renders chat templates with: trim_blocks,
// lstrip_blocks, `-` and `+` markers, and the template's final newline dropped.
#pragma once

#include <string>
#include <vector>

namespace ft::jinja {

struct Token {
  enum class Type {
    Text,
    VarBegin,
    VarEnd,
    BlockBegin,
    BlockEnd,
    Name,
    String,
    Int,
    Float,
    Op,
    End
  };
  Type type;
  std::string value;  // text, name, operator, or the decoded string literal
  int line;
  int column;
};

// Throws ft::Error("template", "line L, column C: ...") for malformed input.
std::vector<Token> tokenize(const std::string& source);

// The error every stage raises for a fault at a place in the template.
[[noreturn]] void syntax_error(int line, int column, const std::string& message);

}  // namespace ft::jinja
