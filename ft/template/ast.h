// The parsed form of a template: expressions and statements, each with the line
// and column it starts at for error messages.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "ft/template/value.h"

namespace ft::jinja {

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  enum class Kind {
    Literal,   // value
    Name,      // name
    List,      // items
    Tuple,     // items
    Dict,      // items: key, value, key, value, ...
    Attr,      // items[0].name
    Item,      // items[0][items[1]]
    Slice,     // items[0][items[1]:items[2]:items[3]], absent parts null
    Call,      // items[0](items[1..]); the last kwarg_names.size() are keyword arguments
    Filter,    // items[0] | name(items[1..]), keywords as for Call
    Test,      // items[0] is [not] name(items[1..]), keywords as for Call
    Unary,     // name in {"-", "+", "not"} applied to items[0]
    Binary,    // items[0] name items[1], name an arithmetic operator or "and", "or"
    Compare,   // items[0] ops[0] items[1] ops[1] items[2] ...
    Condition  // items[0] if items[1] else items[2] (items[2] may be null)
  };
  Kind kind;
  int line = 0;
  int column = 0;
  int depth = 1;  // levels of expressions from here down, this one included
  Value value;
  std::string name;
  bool negated = false;  // Test: `is not`
  std::vector<ExprPtr> items;
  std::vector<std::string> kwarg_names;
  std::vector<std::string> ops;
};

struct Node;
using Body = std::vector<std::unique_ptr<Node>>;

struct MacroParam {
  std::string name;
  ExprPtr default_value;  // null: required
};

struct Node {
  enum class Kind {
    Text,         // text
    Output,       // {{ expr }}
    If,           // branches: (condition, body), the else branch with a null condition
    For,          // for targets in expr [if condition]: body [else: else_body]
    Set,          // set targets = expr, or set targets[0].attr = expr
    SetBlock,     // set targets[0] %}body{% endset, optional filter chain in expr
    Macro,        // macro name(params): body
    CallBlock,    // call expr: body (the body is the macro's caller())
    FilterBlock,  // filter expr(body output): expr is a Filter with a null operand
    Generation,   // generation: body, rendered as is
    Break,
    Continue
  };
  Kind kind;
  int line = 0;
  int column = 0;
  std::string text;
  std::string name;  // macro name
  std::string attr;  // Set: namespace attribute
  ExprPtr expr;
  ExprPtr condition;
  std::vector<std::string> targets;
  std::vector<std::pair<ExprPtr, Body>> branches;
  std::vector<MacroParam> params;
  Body body;
  Body else_body;
};

// Parses a template; throws ft::Error naming line and column for bad syntax.
Body parse(const std::string& source);

}  // namespace ft::jinja
