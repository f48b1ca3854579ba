// Recursive-descent parser with Jinja's operator precedence, from loosest:
// conditional, or, and, not, comparisons, + -, ~, * / // %, **, unary - +,
// then postfix access, calls, filters and tests.
#include <algorithm>

#include "ft/core/error.h"
#include "ft/template/ast.h"
#include "ft/template/interpreter.h"
#include "ft/template/lexer.h"

namespace ft::jinja {
namespace {

using T = Token::Type;

class Parser {
 public:
  explicit Parser(std::vector<Token> tokens) : toks_(std::move(tokens)) {}

  Body parse_template() {
    std::string end;
    Body body = parse_body({}, end);
    return body;
  }

 private:
  const Token& cur() const { return toks_[pos_]; }
  const Token& peek(size_t n = 1) const { return toks_[std::min(pos_ + n, toks_.size() - 1)]; }
  const Token& next() { return toks_[pos_ < toks_.size() - 1 ? pos_++ : pos_]; }

  bool is_op(const char* op) const { return cur().type == T::Op && cur().value == op; }
  bool is_name(const char* name) const { return cur().type == T::Name && cur().value == name; }
  bool accept_op(const char* op) {
    if (!is_op(op)) return false;
    ++pos_;
    return true;
  }
  bool accept_name(const char* name) {
    if (!is_name(name)) return false;
    ++pos_;
    return true;
  }

  static std::string describe(const Token& t) {
    switch (t.type) {
      case T::Text:
        return "text";
      case T::VarBegin:
        return "'{{'";
      case T::VarEnd:
        return "'}}'";
      case T::BlockBegin:
        return "'{%'";
      case T::BlockEnd:
        return "'%}'";
      case T::End:
        return "end of template";
      case T::String:
        return "string";
      default:
        return "'" + t.value + "'";
    }
  }

  [[noreturn]] void fail(const Token& t, const std::string& message) const {
    syntax_error(t.line, t.column, message);
  }
  [[noreturn]] void unexpected(const std::string& expected) const {
    fail(cur(), "expected " + expected + ", got " + describe(cur()));
  }

  void expect_op(const char* op) {
    if (!accept_op(op)) unexpected(std::string("'") + op + "'");
  }
  std::string expect_name() {
    if (cur().type != T::Name) unexpected("a name");
    return next().value;
  }
  void expect_block_end() {
    if (cur().type != T::BlockEnd) unexpected("end of statement '%}'");
    ++pos_;
  }

  // Note [Nesting limits]
  // The parser, the interpreter and the AST's destructor all recurse, so the depth of a
  // template is bounded while it is parsed: `nesting_` counts the statements and
  // expressions the parser is inside, and each expression node records its own depth
  // (left-leaning chains such as `a + b + c ...` or `x.a.b.c ...` are built by loops,
  // not recursion). Past kMaxNesting the template is refused, before the stack runs out.
  class Nested {
   public:
    explicit Nested(Parser& p) : p_(p) {
      if (++p_.nesting_ > kMaxNesting) p_.too_deep(p_.cur());
    }
    ~Nested() { --p_.nesting_; }

   private:
    Parser& p_;
  };
  [[noreturn]] void too_deep(const Token& t) const {
    fail(t, "nesting deeper than " + std::to_string(kMaxNesting));
  }
  // Records e's depth from its operands; refuses it past the limit.
  ExprPtr nest(ExprPtr e) {
    for (const auto& item : e->items)
      if (item) e->depth = std::max(e->depth, item->depth + 1);
    if (e->depth + nesting_ > kMaxNesting) fail_at(*e);
    return e;
  }
  [[noreturn]] void fail_at(const Expr& e) const {
    syntax_error(e.line, e.column, "nesting deeper than " + std::to_string(kMaxNesting));
  }

  // Statements until one of end_tags (consumed, its name stored in `end`).
  Body parse_body(const std::vector<std::string>& end_tags, std::string& end) {
    Body body;
    while (true) {
      const Token& t = cur();
      if (t.type == T::End) {
        if (!end_tags.empty())
          fail(t, "unexpected end of template, expected '" + end_tags.back() + "'");
        return body;
      }
      if (t.type == T::Text) {
        auto node = make(Node::Kind::Text, t);
        node->text = t.value;
        body.push_back(std::move(node));
        ++pos_;
      } else if (t.type == T::VarBegin) {
        ++pos_;
        auto node = make(Node::Kind::Output, t);
        node->expr = parse_tuple();
        if (cur().type != T::VarEnd) unexpected("end of print statement '}}'");
        ++pos_;
        body.push_back(std::move(node));
      } else if (t.type == T::BlockBegin) {
        const Token& keyword = peek();
        if (keyword.type == T::Name &&
            std::find(end_tags.begin(), end_tags.end(), keyword.value) != end_tags.end()) {
          pos_ += 2;
          end = keyword.value;
          return body;
        }
        ++pos_;
        body.push_back(parse_statement());
      } else {
        unexpected("text or a tag");
      }
    }
  }

  std::unique_ptr<Node> make(Node::Kind kind, const Token& t) {
    auto node = std::make_unique<Node>();
    node->kind = kind;
    node->line = t.line;
    node->column = t.column;
    return node;
  }

  std::unique_ptr<Node> parse_statement() {
    Nested nested(*this);
    const Token& kw = cur();
    if (kw.type != T::Name) unexpected("a statement name");
    std::string name = next().value;
    std::string end;
    if (name == "if") {
      auto node = make(Node::Kind::If, kw);
      ExprPtr cond = parse_expression();
      expect_block_end();
      while (true) {
        Body body = parse_body({"elif", "else", "endif"}, end);
        node->branches.emplace_back(std::move(cond), std::move(body));
        if (end == "elif") {
          cond = parse_expression();
          expect_block_end();
        } else if (end == "else") {
          expect_block_end();
          node->branches.emplace_back(nullptr, parse_body({"endif"}, end));
          expect_block_end();
          break;
        } else {
          expect_block_end();
          break;
        }
      }
      return node;
    }
    if (name == "for") {
      auto node = make(Node::Kind::For, kw);
      node->targets = parse_targets();
      if (!accept_name("in")) unexpected("'in'");
      node->expr = parse_tuple(/*with_condition=*/false);
      if (accept_name("if")) node->condition = parse_expression();
      if (is_name("recursive")) fail(cur(), "recursive for loops are not supported");
      expect_block_end();
      node->body = parse_body({"else", "endfor"}, end);
      expect_block_end();
      if (end == "else") {
        node->else_body = parse_body({"endfor"}, end);
        expect_block_end();
      }
      return node;
    }
    if (name == "set") {
      auto node = make(Node::Kind::Set, kw);
      const Token& target = cur();
      if (peek().type == T::Op && peek().value == ".") {
        node->targets.push_back(expect_name());
        ++pos_;
        node->attr = expect_name();
      } else {
        node->targets = parse_targets();
      }
      if (accept_op("=")) {
        node->expr = parse_tuple();
        expect_block_end();
        return node;
      }
      if (!node->attr.empty() || node->targets.size() != 1)
        fail(target, "a block set assigns one name");
      node->kind = Node::Kind::SetBlock;
      if (is_op("|")) node->expr = parse_filter_chain(nullptr);
      expect_block_end();
      node->body = parse_body({"endset"}, end);
      expect_block_end();
      return node;
    }
    if (name == "macro") {
      auto node = make(Node::Kind::Macro, kw);
      node->name = expect_name();
      node->params = parse_params();
      expect_block_end();
      node->body = parse_body({"endmacro"}, end);
      if (cur().type == T::Name && cur().value == node->name) ++pos_;
      expect_block_end();
      return node;
    }
    if (name == "call") {
      auto node = make(Node::Kind::CallBlock, kw);
      if (is_op("(")) node->params = parse_params();
      node->expr = parse_expression();
      if (node->expr->kind != Expr::Kind::Call) fail(kw, "expected a call after 'call'");
      expect_block_end();
      node->body = parse_body({"endcall"}, end);
      expect_block_end();
      return node;
    }
    if (name == "filter") {
      auto node = make(Node::Kind::FilterBlock, kw);
      node->expr = parse_filter_chain(nullptr, /*leading_pipe=*/false);
      expect_block_end();
      node->body = parse_body({"endfilter"}, end);
      expect_block_end();
      return node;
    }
    if (name == "generation") {
      auto node = make(Node::Kind::Generation, kw);
      expect_block_end();
      node->body = parse_body({"endgeneration"}, end);
      expect_block_end();
      return node;
    }
    if (name == "break" || name == "continue") {
      auto node = make(name == "break" ? Node::Kind::Break : Node::Kind::Continue, kw);
      expect_block_end();
      return node;
    }
    fail(kw, "unknown tag '" + name + "'");
  }

  std::vector<std::string> parse_targets() {
    bool paren = accept_op("(");
    std::vector<std::string> names{expect_name()};
    while (accept_op(",")) {
      if (cur().type != T::Name) break;
      names.push_back(expect_name());
    }
    if (paren) expect_op(")");
    return names;
  }

  std::vector<MacroParam> parse_params() {
    std::vector<MacroParam> params;
    expect_op("(");
    while (!accept_op(")")) {
      if (!params.empty()) expect_op(",");
      if (accept_op(")")) break;
      MacroParam p{expect_name(), nullptr};
      if (accept_op("=")) p.default_value = parse_expression();
      params.push_back(std::move(p));
    }
    return params;
  }

  ExprPtr make_expr(Expr::Kind kind, const Token& t) {
    auto e = std::make_unique<Expr>();
    e->kind = kind;
    e->line = t.line;
    e->column = t.column;
    return e;
  }

  // An expression, or several separated by commas (a tuple).
  ExprPtr parse_tuple(bool with_condition = true) {
    const Token& start = cur();
    ExprPtr first = with_condition ? parse_expression() : parse_or();
    if (!is_op(",")) return first;
    auto tuple = make_expr(Expr::Kind::Tuple, start);
    tuple->items.push_back(std::move(first));
    while (accept_op(",")) {
      if (cur().type == T::BlockEnd || cur().type == T::VarEnd || is_name("if")) break;
      tuple->items.push_back(with_condition ? parse_expression() : parse_or());
    }
    return nest(std::move(tuple));
  }

  ExprPtr parse_expression() {
    Nested nested(*this);
    const Token& start = cur();
    ExprPtr expr = parse_or();
    while (accept_name("if")) {
      auto cond = make_expr(Expr::Kind::Condition, start);
      cond->items.push_back(std::move(expr));
      cond->items.push_back(parse_or());
      cond->items.push_back(accept_name("else") ? parse_expression() : nullptr);
      expr = nest(std::move(cond));
    }
    return expr;
  }

  ExprPtr binary(const Token& at, const std::string& op, ExprPtr a, ExprPtr b) {
    auto e = make_expr(Expr::Kind::Binary, at);
    e->name = op;
    e->items.push_back(std::move(a));
    e->items.push_back(std::move(b));
    return nest(std::move(e));
  }

  ExprPtr parse_or() {
    ExprPtr left = parse_and();
    while (is_name("or")) {
      const Token& at = next();
      left = binary(at, "or", std::move(left), parse_and());
    }
    return left;
  }

  ExprPtr parse_and() {
    ExprPtr left = parse_not();
    while (is_name("and")) {
      const Token& at = next();
      left = binary(at, "and", std::move(left), parse_not());
    }
    return left;
  }

  ExprPtr parse_not() {
    if (is_name("not")) {
      Nested nested(*this);
      auto e = make_expr(Expr::Kind::Unary, next());
      e->name = "not";
      e->items.push_back(parse_not());
      return nest(std::move(e));
    }
    return parse_compare();
  }

  ExprPtr parse_compare() {
    const Token& start = cur();
    ExprPtr first = parse_math1();
    ExprPtr cmp;
    while (true) {
      std::string op;
      if (cur().type == T::Op &&
          (cur().value == "==" || cur().value == "!=" || cur().value == "<" || cur().value == ">" ||
           cur().value == "<=" || cur().value == ">=")) {
        op = next().value;
      } else if (is_name("in")) {
        ++pos_;
        op = "in";
      } else if (is_name("not") && peek().type == T::Name && peek().value == "in") {
        pos_ += 2;
        op = "not in";
      } else {
        break;
      }
      if (!cmp) {
        cmp = make_expr(Expr::Kind::Compare, start);
        cmp->items.push_back(std::move(first));
      }
      cmp->ops.push_back(op);
      cmp->items.push_back(parse_math1());
      cmp = nest(std::move(cmp));
    }
    return cmp ? std::move(cmp) : std::move(first);
  }

  ExprPtr parse_math1() {
    ExprPtr left = parse_concat();
    while (is_op("+") || is_op("-")) {
      const Token& at = next();
      left = binary(at, at.value, std::move(left), parse_concat());
    }
    return left;
  }

  ExprPtr parse_concat() {
    ExprPtr left = parse_math2();
    while (is_op("~")) {
      const Token& at = next();
      left = binary(at, "~", std::move(left), parse_math2());
    }
    return left;
  }

  ExprPtr parse_math2() {
    ExprPtr left = parse_pow();
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
      const Token& at = next();
      left = binary(at, at.value, std::move(left), parse_pow());
    }
    return left;
  }

  ExprPtr parse_pow() {
    ExprPtr left = parse_unary();
    while (is_op("**")) {
      const Token& at = next();
      left = binary(at, "**", std::move(left), parse_unary());
    }
    return left;
  }

  ExprPtr parse_unary(bool with_filter = true) {
    ExprPtr node;
    if (is_op("-") || is_op("+")) {
      Nested nested(*this);
      node = make_expr(Expr::Kind::Unary, cur());
      node->name = next().value;
      node->items.push_back(parse_unary(false));
      node = nest(std::move(node));
    } else {
      node = parse_primary();
    }
    node = parse_postfix(std::move(node));
    if (with_filter) node = parse_filters_and_tests(std::move(node));
    return node;
  }

  ExprPtr parse_primary() {
    const Token& t = cur();
    switch (t.type) {
      case T::Name: {
        ++pos_;
        auto e = make_expr(Expr::Kind::Literal, t);
        if (t.value == "true" || t.value == "True")
          e->value = Value(true);
        else if (t.value == "false" || t.value == "False")
          e->value = Value(false);
        else if (t.value == "none" || t.value == "None")
          e->value = Value::none();
        else {
          e->kind = Expr::Kind::Name;
          e->name = t.value;
        }
        return e;
      }
      case T::String: {
        auto e = make_expr(Expr::Kind::Literal, t);
        std::string s;
        while (cur().type == T::String) s += next().value;  // adjacent literals join
        e->value = Value(std::move(s));
        return e;
      }
      case T::Int: {
        ++pos_;
        auto e = make_expr(Expr::Kind::Literal, t);
        try {
          e->value = Value(static_cast<int64_t>(std::stoll(t.value)));
        } catch (const std::exception&) {
          fail(t, "integer literal out of range");
        }
        return e;
      }
      case T::Float: {
        ++pos_;
        auto e = make_expr(Expr::Kind::Literal, t);
        // strtod, not stod: a literal past the float range is inf in Python, not an error.
        e->value = Value(std::strtod(t.value.c_str(), nullptr));
        return e;
      }
      case T::Op:
        if (t.value == "(") {
          ++pos_;
          if (accept_op(")")) return make_expr(Expr::Kind::Tuple, t);
          ExprPtr inner = parse_expression();
          if (is_op(",")) {
            auto tuple = make_expr(Expr::Kind::Tuple, t);
            tuple->items.push_back(std::move(inner));
            while (accept_op(",")) {
              if (is_op(")")) break;
              tuple->items.push_back(parse_expression());
            }
            inner = std::move(tuple);
          }
          expect_op(")");
          return nest(std::move(inner));
        }
        if (t.value == "[") {
          ++pos_;
          auto list = make_expr(Expr::Kind::List, t);
          while (!accept_op("]")) {
            if (!list->items.empty()) expect_op(",");
            if (accept_op("]")) break;
            list->items.push_back(parse_expression());
          }
          return nest(std::move(list));
        }
        if (t.value == "{") {
          ++pos_;
          auto dict = make_expr(Expr::Kind::Dict, t);
          while (!accept_op("}")) {
            if (!dict->items.empty()) expect_op(",");
            if (accept_op("}")) break;
            dict->items.push_back(parse_expression());
            expect_op(":");
            dict->items.push_back(parse_expression());
          }
          return nest(std::move(dict));
        }
        break;
      default:
        break;
    }
    fail(t, "unexpected " + describe(t));
  }

  ExprPtr parse_postfix(ExprPtr node) {
    while (true) {
      const Token& t = cur();
      if (accept_op(".")) {
        auto e = make_expr(Expr::Kind::Attr, t);
        if (cur().type == T::Int) {  // x.0 reads item 0
          e->kind = Expr::Kind::Item;
          e->items.push_back(std::move(node));
          auto index = make_expr(Expr::Kind::Literal, cur());
          try {
            index->value = Value(static_cast<int64_t>(std::stoll(cur().value)));
          } catch (const std::exception&) {
            fail(cur(), "integer literal out of range");
          }
          ++pos_;
          e->items.push_back(std::move(index));
        } else {
          e->name = expect_name();
          e->items.push_back(std::move(node));
        }
        node = nest(std::move(e));
      } else if (accept_op("[")) {
        node = parse_subscript(std::move(node), t);
      } else if (is_op("(")) {
        node = parse_call(std::move(node));
      } else {
        return node;
      }
    }
  }

  ExprPtr parse_subscript(ExprPtr object, const Token& at) {
    ExprPtr parts[3];
    bool slice = false;
    for (int i = 0; i < 3; ++i) {
      if (!is_op(":") && !is_op("]")) parts[i] = parse_expression();
      if (i < 2 && accept_op(":")) {
        slice = true;
        continue;
      }
      break;
    }
    expect_op("]");
    auto e = make_expr(slice ? Expr::Kind::Slice : Expr::Kind::Item, at);
    e->items.push_back(std::move(object));
    if (!slice && !parts[0]) fail(at, "expected an index");
    e->items.push_back(std::move(parts[0]));
    if (slice) {
      e->items.push_back(std::move(parts[1]));
      e->items.push_back(std::move(parts[2]));
    }
    return nest(std::move(e));
  }

  // Arguments after '(': positional first, then name=value.
  void parse_args(Expr& e) {
    expect_op("(");
    std::vector<ExprPtr> kwargs;
    while (!accept_op(")")) {
      if (e.items.size() > 1 || !kwargs.empty()) expect_op(",");  // items[0] is the operand
      if (accept_op(")")) break;
      if (cur().type == T::Name && peek().type == T::Op && peek().value == "=") {
        e.kwarg_names.push_back(next().value);
        ++pos_;
        kwargs.push_back(parse_expression());
      } else {
        if (!kwargs.empty()) fail(cur(), "positional argument after keyword argument");
        e.items.push_back(parse_expression());
      }
    }
    for (auto& k : kwargs) e.items.push_back(std::move(k));
  }

  ExprPtr parse_call(ExprPtr callee) {
    auto e = make_expr(Expr::Kind::Call, cur());
    e->items.push_back(std::move(callee));
    parse_args(*e);
    return nest(std::move(e));
  }

  // `| name(args)` repeated; the operand may be null (filter blocks, block sets).
  ExprPtr parse_filter_chain(ExprPtr operand, bool leading_pipe = true) {
    bool first = true;
    while ((first && !leading_pipe) || accept_op("|")) {
      first = false;
      auto e = make_expr(Expr::Kind::Filter, cur());
      e->name = expect_name();
      if (!is_filter(e->name)) fail(toks_[pos_ - 1], "no filter named '" + e->name + "'");
      e->items.push_back(std::move(operand));
      if (is_op("(")) {
        parse_args(*e);
      }
      operand = nest(std::move(e));
    }
    return operand;
  }

  ExprPtr parse_filters_and_tests(ExprPtr node) {
    while (true) {
      if (is_op("|")) {
        node = parse_filter_chain(std::move(node));
      } else if (is_name("is")) {
        auto e = make_expr(Expr::Kind::Test, next());
        e->negated = accept_name("not");
        e->line = cur().line;
        e->column = cur().column;
        e->name = expect_name();
        if (!is_test(e->name)) fail(toks_[pos_ - 1], "no test named '" + e->name + "'");
        e->items.push_back(std::move(node));
        if (is_op("(")) {
          parse_args(*e);
        } else if ((cur().type == T::Name && cur().value != "else" && cur().value != "or" &&
                    cur().value != "and" && cur().value != "if" && cur().value != "is" &&
                    cur().value != "in" && cur().value != "not") ||
                   cur().type == T::String || cur().type == T::Int || cur().type == T::Float ||
                   is_op("[") || is_op("{")) {
          e->items.push_back(parse_postfix(parse_primary()));
        }
        node = nest(std::move(e));
      } else if (is_op("(")) {
        node = parse_call(std::move(node));
      } else {
        return node;
      }
    }
  }

  std::vector<Token> toks_;
  size_t pos_ = 0;
  int nesting_ = 0;
};

}  // namespace

Body parse(const std::string& source) {
  if (source.size() > kMaxTemplateBytes)
    throw Error("template", "a template of " + std::to_string(source.size()) +
                                " bytes is larger than ft reads (" +
                                std::to_string(kMaxTemplateBytes) + ")");
  return Parser(tokenize(source)).parse_template();
}

}  // namespace ft::jinja
