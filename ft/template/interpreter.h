// Evaluates a parsed template against variables. Internal to ft/template; the
// public entry point is ft/template/chat_template.h.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ft/template/ast.h"
#include "ft/template/value.h"

namespace ft::jinja {

// The limits every template is held to, whatever its source (docs/reliability.md):
// they keep a broken or hostile template from overflowing the stack, running for ever
// or exhausting memory, and each is far above what real chat templates need.
constexpr size_t kMaxTemplateBytes = size_t{1} << 20;  // the source text
constexpr int kMaxNesting = 512;  // statements and expressions inside each other, when parsed
constexpr int kMaxEvalDepth = 4 * kMaxNesting;  // the same while rendering, macro calls included
constexpr int64_t kMaxSteps = 10'000'000;       // statements and expressions evaluated
constexpr size_t kMaxTextBytes = size_t{16} << 20;  // a string built, and the output
constexpr size_t kMaxListItems = size_t{1} << 20;   // a list built by + or *

// Whether a filter or test of this name exists, for errors at parse time.
bool is_filter(const std::string& name);
bool is_test(const std::string& name);

class Interpreter {
 public:
  // Renders `body` with `variables` (a dict) visible as top-level names, in at most
  // max_steps steps.
  std::string render(const Body& body, const Value& variables, int64_t max_steps = kMaxSteps);

  // Throws ft::Error naming the line and column being evaluated.
  [[noreturn]] void fail(const std::string& message) const;

  // Builtins (builtins.cpp): calls, filters, tests, attribute access.
  Value call(const Value& callee, CallArgs& args);
  Value apply_filter(const std::string& name, const Value& operand, CallArgs& args);
  bool apply_test(const std::string& name, const Value& operand, CallArgs& args);
  // `obj.name`: a dict entry, a bound method, or undefined.
  Value get_attr(const Value& obj, const std::string& name);
  // `obj[key]`: an entry, an element, or undefined.
  Value get_item(const Value& obj, const Value& key);
  // The elements a for loop visits (dict keys, string characters).
  List iterate(const Value& v);
  // The builtin global functions (range, namespace, dict, raise_exception, ...).
  std::optional<Value> builtin_global(const std::string& name);

 private:
  struct Frame {
    Dict vars;
    std::shared_ptr<Frame> parent;
  };
  enum class Flow { Normal, Break, Continue };

  Flow exec(const Body& body);
  Flow exec_node(const Node& node);
  void exec_for(const Node& node);
  Value eval(const Expr& e);
  Value eval_binary(const Expr& e);
  bool compare(const std::string& op, const Value& a, const Value& b);
  void collect_args(const Expr& e, CallArgs& args);
  Value make_macro(const Node& node, std::shared_ptr<Frame> scope,
                   const std::vector<MacroParam>& params, const Body& body,
                   const std::string& name);
  std::string capture(const Body& body);
  Value lookup(const std::string& name);
  void assign(const std::string& name, Value v);
  void assign_targets(const std::vector<std::string>& targets, const Value& v);
  // Counts a step and a level of recursion for the scope of one eval or exec_node.
  class Step {
   public:
    explicit Step(Interpreter& in);
    ~Step() { --in_.eval_depth_; }

   private:
    Interpreter& in_;
  };
  void count_step();
  void check_text_size(size_t bytes);
  void check_list_size(size_t items);
  [[noreturn]] void fail_overflow(const Value& a, const std::string& op, const Value& b);
  void at(int line, int column) {
    line_ = line;
    column_ = column;
  }

  std::shared_ptr<Frame> frame_;
  // The scopes macros have captured. A macro is stored in the scope it captures, a
  // cycle of shared pointers; render() empties these scopes at the end to free them.
  std::vector<std::shared_ptr<Frame>> macro_scopes_;
  std::string* out_ = nullptr;
  const Value* filter_input_ = nullptr;  // operand of a filter block's chain
  int line_ = 0;
  int column_ = 0;
  int depth_ = 0;  // macro calls in progress
  int eval_depth_ = 0;
  int64_t steps_ = 0;
  int64_t max_steps_ = kMaxSteps;
};

}  // namespace ft::jinja
