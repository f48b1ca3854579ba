#include "ft/template/interpreter.h"

#include <cmath>

#include "ft/core/error.h"
#include "ft/template/integers.h"
#include "ft/template/lexer.h"

namespace ft::jinja {

namespace {
constexpr int max_call_depth = 200;  // macros calling macros; deeper means runaway recursion
}  // namespace

void Interpreter::fail(const std::string& message) const {
  syntax_error(line_, column_, message);
}

Interpreter::Step::Step(Interpreter& in) : in_(in) {
  ++in.eval_depth_;
  if (in.eval_depth_ > kMaxEvalDepth)
    in.fail("nesting deeper than " + std::to_string(kMaxEvalDepth) +
            " while rendering (macros calling macros?)");
  in.count_step();
}

void Interpreter::count_step() {
  if (++steps_ > max_steps_)
    fail("the template ran more than " + std::to_string(max_steps_) + " steps (a runaway loop?)");
}

void Interpreter::check_list_size(size_t items) {
  if (items > kMaxListItems)
    fail("list of " + std::to_string(items) + " items is longer than a template may build (" +
         std::to_string(kMaxListItems) + ")");
}

void Interpreter::check_text_size(size_t bytes) {
  if (bytes > kMaxTextBytes)
    fail("text of " + std::to_string(bytes) + " bytes is longer than a template may build (" +
         std::to_string(kMaxTextBytes) + ")");
}

void Interpreter::fail_overflow(const Value& a, const std::string& op, const Value& b) {
  fail("integer overflow in " + a.repr() + " " + op + " " + b.repr() +
       " (template integers are 64-bit; Python would give a bigger integer)");
}

std::string Interpreter::render(const Body& body, const Value& variables, int64_t max_steps) {
  FT_ASSERT(variables.is_dict());
  max_steps_ = max_steps;
  steps_ = 0;
  eval_depth_ = 0;
  frame_ = std::make_shared<Frame>();
  frame_->vars = variables.as_dict();
  std::string out;
  out_ = &out;
  struct Cleanup {
    Interpreter& in;
    ~Cleanup() {
      in.out_ = nullptr;
      in.frame_.reset();
      for (const auto& scope : in.macro_scopes_) scope->vars.clear();
      in.macro_scopes_.clear();
    }
  } cleanup{*this};
  exec(body);
  return out;
}

namespace {

// Whether v is or holds a namespace (within the depth values are built to).
bool holds_namespace(const Value& v) {
  if (v.is_namespace()) return true;
  if (v.is_list())
    for (const Value& item : v.as_list())
      if (holds_namespace(item)) return true;
  if (v.is_dict())
    for (const auto& [key, item] : v.as_dict())
      if (holds_namespace(item)) return true;
  return false;
}

}  // namespace

Interpreter::Flow Interpreter::exec(const Body& body) {
  for (const auto& node : body) {
    Flow flow = exec_node(*node);
    if (flow != Flow::Normal) return flow;
  }
  return Flow::Normal;
}

std::string Interpreter::capture(const Body& body) {
  std::string buffer;
  std::string* saved = out_;
  out_ = &buffer;
  exec(body);
  out_ = saved;
  return buffer;
}

Value Interpreter::lookup(const std::string& name) {
  for (Frame* f = frame_.get(); f; f = f->parent.get())
    for (auto& [k, v] : f->vars)
      if (k == name) return v;
  if (auto builtin = builtin_global(name)) return *builtin;
  return Value::undefined("'" + name + "' is undefined");
}

void Interpreter::assign(const std::string& name, Value v) {
  for (auto& [k, slot] : frame_->vars)
    if (k == name) {
      slot = std::move(v);
      return;
    }
  frame_->vars.emplace_back(name, std::move(v));
}

void Interpreter::assign_targets(const std::vector<std::string>& targets, const Value& v) {
  if (targets.size() == 1) {
    assign(targets[0], v);
    return;
  }
  List items = iterate(v);
  if (items.size() != targets.size())
    fail(items.size() < targets.size()
             ? "not enough values to unpack (expected " + std::to_string(targets.size()) +
                   ", got " + std::to_string(items.size()) + ")"
             : "too many values to unpack (expected " + std::to_string(targets.size()) + ")");
  for (size_t i = 0; i < targets.size(); ++i) assign(targets[i], items[i]);
}

Interpreter::Flow Interpreter::exec_node(const Node& node) {
  at(node.line, node.column);
  Step step(*this);
  switch (node.kind) {
    case Node::Kind::Text:
      check_text_size(out_->size() + node.text.size());
      *out_ += node.text;
      break;
    case Node::Kind::Output: {
      std::string text = eval(*node.expr).str();
      at(node.line, node.column);
      check_text_size(out_->size() + text.size());
      *out_ += text;
      break;
    }
    case Node::Kind::If:
      for (const auto& [cond, body] : node.branches)
        if (!cond || eval(*cond).truthy()) return exec(body);
      break;
    case Node::Kind::For:
      exec_for(node);
      break;
    case Node::Kind::Set: {
      Value v = eval(*node.expr);
      if (node.attr.empty()) {
        assign_targets(node.targets, v);
        break;
      }
      Value ns = lookup(node.targets[0]);
      at(node.line, node.column);
      if (!ns.is_namespace()) fail("cannot assign attribute on non-namespace object");
      // A namespace inside a namespace could be made to hold itself: a cycle that
      // str() and tojson would follow for ever.
      if (holds_namespace(v)) fail("a namespace attribute cannot hold a namespace");
      ns.set(node.attr, std::move(v));
      break;
    }
    case Node::Kind::SetBlock: {
      Value v(capture(node.body));
      if (node.expr) {
        filter_input_ = &v;
        v = eval(*node.expr);
        filter_input_ = nullptr;
      }
      assign(node.targets[0], std::move(v));
      break;
    }
    case Node::Kind::Macro:
      assign(node.name, make_macro(node, frame_, node.params, node.body, node.name));
      break;
    case Node::Kind::CallBlock: {
      const Expr& call = *node.expr;
      Value callee = eval(*call.items[0]);
      CallArgs args;
      collect_args(call, args);
      args.kwargs.emplace_back("caller",
                               make_macro(node, frame_, node.params, node.body, "caller"));
      at(call.line, call.column);
      std::string text = this->call(callee, args).str();
      check_text_size(out_->size() + text.size());
      *out_ += text;
      break;
    }
    case Node::Kind::FilterBlock: {
      Value v(capture(node.body));
      filter_input_ = &v;
      Value result = eval(*node.expr);
      filter_input_ = nullptr;
      std::string text = result.str();
      check_text_size(out_->size() + text.size());
      *out_ += text;
      break;
    }
    case Node::Kind::Generation:
      return exec(node.body);
    case Node::Kind::Break:
      return Flow::Break;
    case Node::Kind::Continue:
      return Flow::Continue;
  }
  return Flow::Normal;
}

void Interpreter::exec_for(const Node& node) {
  Value iterable = eval(*node.expr);
  at(node.line, node.column);
  List all = iterate(iterable);
  std::shared_ptr<Frame> outer = frame_;
  // `for x in xs if cond`: the condition sees x, and loop.* counts only what passes.
  List items;
  if (node.condition) {
    for (const Value& item : all) {
      count_step();
      frame_ = std::make_shared<Frame>(Frame{{}, outer});
      assign_targets(node.targets, item);
      if (eval(*node.condition).truthy()) items.push_back(item);
    }
    frame_ = outer;
  } else {
    items = std::move(all);
  }
  const int64_t n = static_cast<int64_t>(items.size());
  for (int64_t i = 0; i < n; ++i) {
    at(node.line, node.column);
    count_step();  // an empty body costs nothing else
    // Each iteration starts a fresh scope: a `set` inside the body does not outlive it.
    frame_ = std::make_shared<Frame>(Frame{{}, outer});
    Dict loop{{"index", Value(i + 1)},      {"index0", Value(i)},
              {"revindex", Value(n - i)},   {"revindex0", Value(n - i - 1)},
              {"first", Value(i == 0)},     {"last", Value(i == n - 1)},
              {"length", Value(n)},         {"depth", Value(int64_t{1})},
              {"depth0", Value(int64_t{0})}};
    if (i > 0) loop.emplace_back("previtem", items[static_cast<size_t>(i - 1)]);
    if (i + 1 < n) loop.emplace_back("nextitem", items[static_cast<size_t>(i + 1)]);
    loop.emplace_back("cycle", Value::function("loop.cycle", [i](Interpreter& in, CallArgs& a) {
                        if (a.args.empty()) in.fail("no items for cycling given");
                        return a.args[static_cast<size_t>(i) % a.args.size()];
                      }));
    frame_->vars.emplace_back("loop", Value::dict(std::move(loop)));
    assign_targets(node.targets, items[static_cast<size_t>(i)]);
    Flow flow = exec(node.body);
    frame_ = outer;
    if (flow == Flow::Break) break;
  }
  frame_ = outer;
  if (n == 0 && !node.else_body.empty()) {
    frame_ = std::make_shared<Frame>(Frame{{}, outer});
    exec(node.else_body);
    frame_ = outer;
  }
}

Value Interpreter::make_macro(const Node& node, std::shared_ptr<Frame> scope,
                              const std::vector<MacroParam>& params, const Body& body,
                              const std::string& name) {
  macro_scopes_.push_back(scope);
  return Value::function(name, [scope, &params, &body, name](Interpreter& in, CallArgs& a) {
    if (++in.depth_ > max_call_depth) {
      --in.depth_;
      in.fail("macro '" + name + "' called itself too deeply");
    }
    auto saved = in.frame_;
    in.frame_ = std::make_shared<Frame>(Frame{{}, scope});
    if (a.args.size() > params.size())
      in.fail("macro '" + name + "' takes not more than " + std::to_string(params.size()) +
              " argument(s)");
    for (size_t i = 0; i < params.size(); ++i) {
      const MacroParam& p = params[i];
      Value v;
      bool found = false;
      if (i < a.args.size()) {
        v = a.args[i];
        found = true;
      }
      for (auto& [k, kv] : a.kwargs)
        if (k == p.name) {
          v = kv;
          found = true;
        }
      if (!found && p.default_value) v = in.eval(*p.default_value);
      if (!found && !p.default_value)
        v = Value::undefined("parameter '" + p.name + "' was not provided");
      in.assign(p.name, v);
    }
    for (auto& [k, kv] : a.kwargs) {
      bool known = k == "caller";
      for (const auto& p : params) known = known || p.name == k;
      if (!known) in.fail("macro '" + name + "' takes no keyword argument '" + k + "'");
      if (k == "caller") in.assign("caller", kv);
    }
    std::string out = in.capture(body);
    in.frame_ = saved;
    --in.depth_;
    return Value(std::move(out));
  });
}

void Interpreter::collect_args(const Expr& e, CallArgs& args) {
  size_t n_kw = e.kwarg_names.size();
  size_t n_pos = e.items.size() - 1 - n_kw;
  for (size_t i = 1; i <= n_pos; ++i) args.args.push_back(eval(*e.items[i]));
  for (size_t k = 0; k < n_kw; ++k)
    args.kwargs.emplace_back(e.kwarg_names[k], eval(*e.items[1 + n_pos + k]));
}

Value Interpreter::eval(const Expr& e) {
  at(e.line, e.column);
  Step step(*this);
  switch (e.kind) {
    case Expr::Kind::Literal:
      return e.value;
    case Expr::Kind::Name:
      return lookup(e.name);
    case Expr::Kind::List:
    case Expr::Kind::Tuple: {
      List items;
      for (const auto& item : e.items) items.push_back(eval(*item));
      at(e.line, e.column);
      try {
        return Value::list(std::move(items), e.kind == Expr::Kind::Tuple);
      } catch (const Error& error) {
        fail(error.fact());  // nested too deep, now with the place
      }
    }
    case Expr::Kind::Dict: {
      Dict items;
      for (size_t i = 0; i < e.items.size(); i += 2) {
        Value key = eval(*e.items[i]);
        if (!key.is_string()) {
          at(e.items[i]->line, e.items[i]->column);
          fail("dict keys must be strings");
        }
        Value v = eval(*e.items[i + 1]);
        bool replaced = false;
        for (auto& [k, slot] : items)
          if (k == key.as_string()) {
            slot = v;
            replaced = true;
          }
        if (!replaced) items.emplace_back(key.as_string(), std::move(v));
      }
      at(e.line, e.column);
      try {
        return Value::dict(std::move(items));
      } catch (const Error& error) {
        fail(error.fact());  // nested too deep, now with the place
      }
    }
    case Expr::Kind::Attr: {
      Value obj = eval(*e.items[0]);
      at(e.line, e.column);
      return get_attr(obj, e.name);
    }
    case Expr::Kind::Item: {
      Value obj = eval(*e.items[0]);
      Value key = eval(*e.items[1]);
      at(e.line, e.column);
      return get_item(obj, key);
    }
    case Expr::Kind::Slice: {
      Value obj = eval(*e.items[0]);
      std::optional<int64_t> bounds[3];
      for (int i = 0; i < 3; ++i) {
        if (!e.items[static_cast<size_t>(i) + 1]) continue;
        Value b = eval(*e.items[static_cast<size_t>(i) + 1]);
        if (b.is_none()) continue;
        at(e.line, e.column);
        if (!b.is_int() && !b.is_bool()) fail("slice indices must be integers or None");
        bounds[i] = b.as_int();
      }
      at(e.line, e.column);
      if (obj.is_undefined()) fail(obj.undefined_hint());
      int64_t step = bounds[2].value_or(1);
      if (step == 0) fail("slice step cannot be zero");
      std::u32string chars;
      bool is_str = obj.is_string();
      if (is_str)
        chars = utf8_decode(obj.as_string());
      else if (!obj.is_list())
        fail("'" + obj.type_name() + "' object is not subscriptable");
      int64_t n =
          is_str ? static_cast<int64_t>(chars.size()) : static_cast<int64_t>(obj.as_list().size());
      auto clamp = [&](std::optional<int64_t> b, int64_t dflt) {
        if (!b) return dflt;
        int64_t v = *b < 0 ? *b + n : *b;
        if (step > 0) return std::clamp<int64_t>(v, 0, n);
        return std::clamp<int64_t>(v, -1, n - 1);
      };
      int64_t start = clamp(bounds[0], step > 0 ? 0 : n - 1);
      int64_t stop = clamp(bounds[1], step > 0 ? n : -1);
      std::u32string sub;
      List items;
      for (int64_t i = start; step > 0 ? i < stop : i > stop;) {
        if (is_str)
          sub.push_back(chars[static_cast<size_t>(i)]);
        else
          items.push_back(obj.as_list()[static_cast<size_t>(i)]);
        if (__builtin_add_overflow(i, step, &i)) break;  // past INT64's ends: past stop too
      }
      return is_str ? Value(utf8_encode(sub)) : Value::list(std::move(items), obj.is_tuple());
    }
    case Expr::Kind::Call: {
      Value callee = eval(*e.items[0]);
      CallArgs args;
      collect_args(e, args);
      at(e.line, e.column);
      return call(callee, args);
    }
    case Expr::Kind::Filter: {
      Value operand = e.items[0] ? eval(*e.items[0]) : *filter_input_;
      CallArgs args;
      collect_args(e, args);
      at(e.line, e.column);
      return apply_filter(e.name, operand, args);
    }
    case Expr::Kind::Test: {
      Value operand = eval(*e.items[0]);
      CallArgs args;
      collect_args(e, args);
      at(e.line, e.column);
      return Value(apply_test(e.name, operand, args) != e.negated);
    }
    case Expr::Kind::Unary: {
      Value v = eval(*e.items[0]);
      at(e.line, e.column);
      if (e.name == "not") return Value(!v.truthy());
      if (v.is_undefined()) fail(v.undefined_hint());
      if (!v.is_number())
        fail("bad operand type for unary " + e.name + ": '" + v.type_name() + "'");
      if (e.name == "+") return v.is_float() ? v : Value(v.as_int());
      if (v.is_float()) return Value(-v.as_double());
      auto negated = int_neg(v.as_int());
      if (!negated) fail("integer overflow in -(" + v.repr() + ") (template integers are 64-bit)");
      return Value(*negated);
    }
    case Expr::Kind::Binary:
      return eval_binary(e);
    case Expr::Kind::Compare: {
      Value left = eval(*e.items[0]);
      for (size_t i = 0; i < e.ops.size(); ++i) {
        Value right = eval(*e.items[i + 1]);
        at(e.line, e.column);
        if (!compare(e.ops[i], left, right)) return Value(false);
        left = std::move(right);
      }
      return Value(true);
    }
    case Expr::Kind::Condition: {
      if (eval(*e.items[1]).truthy()) return eval(*e.items[0]);
      if (e.items[2]) return eval(*e.items[2]);
      return Value::undefined("the inline if-expression on line " + std::to_string(e.line) +
                              " evaluated to false and no else section was defined.");
    }
  }
  FT_ASSERT(false);
}

bool Interpreter::compare(const std::string& op, const Value& a, const Value& b) {
  if (op == "==") return equals(a, b);
  if (op == "!=") return !equals(a, b);
  if (op == "in" || op == "not in") {
    bool found = false;
    if (b.is_string()) {
      if (!a.is_string())
        fail("'in <string>' requires string as left operand, not " + a.type_name());
      found = b.as_string().find(a.as_string()) != std::string::npos;
    } else if (b.is_list()) {
      for (const Value& item : b.as_list()) found = found || equals(a, item);
    } else if (b.is_mapping_like()) {
      found = a.is_string() && b.find(a.as_string()) != nullptr;
    } else if (!b.is_undefined()) {
      fail("argument of type '" + b.type_name() + "' is not iterable");
    }
    return op == "in" ? found : !found;
  }
  if (a.is_undefined()) fail(a.undefined_hint());
  if (b.is_undefined()) fail(b.undefined_hint());
  try {
    if (op == "<") return less(a, b);
    if (op == ">") return less(b, a);
    if (op == "<=") return !less(b, a);
    if (op == ">=") return !less(a, b);
  } catch (const Error& err) {
    fail(err.fact());
  }
  FT_ASSERT(false);
}

Value Interpreter::eval_binary(const Expr& e) {
  const std::string& op = e.name;
  Value a = eval(*e.items[0]);
  if (op == "and") return a.truthy() ? eval(*e.items[1]) : a;
  if (op == "or") return a.truthy() ? a : eval(*e.items[1]);
  Value b = eval(*e.items[1]);
  at(e.line, e.column);
  if (op == "~") {
    std::string left = a.str(), right = b.str();
    check_text_size(left.size() + right.size());
    return Value(left + right);
  }
  if (a.is_undefined()) fail(a.undefined_hint());
  if (b.is_undefined()) fail(b.undefined_hint());
  auto unsupported = [&]() {
    return "unsupported operand type(s) for " + op + ": '" + a.type_name() + "' and '" +
           b.type_name() + "'";
  };
  if (a.is_number() && b.is_number()) {
    bool floats = a.is_float() || b.is_float();
    auto checked = [&](std::optional<int64_t> r) {
      if (!r) fail_overflow(a, op, b);
      return Value(*r);
    };
    if (op == "+")
      return floats ? Value(a.as_double() + b.as_double())
                    : checked(int_add(a.as_int(), b.as_int()));
    if (op == "-")
      return floats ? Value(a.as_double() - b.as_double())
                    : checked(int_sub(a.as_int(), b.as_int()));
    if (op == "*")
      return floats ? Value(a.as_double() * b.as_double())
                    : checked(int_mul(a.as_int(), b.as_int()));
    if (op == "/") {
      if (b.as_double() == 0) fail("division by zero");
      return Value(a.as_double() / b.as_double());
    }
    if (op == "//" || op == "%") {
      if (b.as_double() == 0)
        fail(op == "%" ? "modulo by zero" : "integer division or modulo by zero");
      if (!floats)
        return op == "//" ? checked(int_floor_div(a.as_int(), b.as_int()))
                          : Value(int_mod(a.as_int(), b.as_int()));
      double q = std::floor(a.as_double() / b.as_double());
      return op == "//" ? Value(q) : Value(a.as_double() - q * b.as_double());
    }
    if (op == "**") {
      if (!floats && b.as_int() >= 0) return checked(int_pow(a.as_int(), b.as_int()));
      return Value(std::pow(a.as_double(), b.as_double()));
    }
    fail(unsupported());
  }
  if (op == "+") {
    if (a.is_string() && b.is_string()) {
      check_text_size(a.as_string().size() + b.as_string().size());
      return Value(a.as_string() + b.as_string());
    }
    if (a.is_list() && b.is_list()) {
      check_list_size(a.as_list().size() + b.as_list().size());
      List items = a.as_list();
      items.insert(items.end(), b.as_list().begin(), b.as_list().end());
      return Value::list(std::move(items), a.is_tuple());
    }
  }
  if (op == "*" && (a.is_string() || a.is_list()) && (b.is_int() || b.is_bool())) {
    // The size is checked before anything is built; a count below 1 gives an empty result.
    const uint64_t count = static_cast<uint64_t>(std::max<int64_t>(b.as_int(), 0));
    const uint64_t unit = a.is_string() ? a.as_string().size() : a.as_list().size();
    if (unit != 0 && count > (a.is_string() ? kMaxTextBytes : kMaxListItems) / unit)
      fail(std::string(a.is_string() ? "a string" : "a list") + " repeated " +
           std::to_string(count) + " times is larger than a template may build");
    if (a.is_string()) {
      std::string s;
      for (int64_t i = 0; i < b.as_int(); ++i) s += a.as_string();
      return Value(std::move(s));
    }
    List items;
    for (int64_t i = 0; i < b.as_int(); ++i)
      items.insert(items.end(), a.as_list().begin(), a.as_list().end());
    return Value::list(std::move(items));
  }
  fail(unsupported());
}

}  // namespace ft::jinja
