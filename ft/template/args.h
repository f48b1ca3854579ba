// Reading the arguments of builtin functions, filters and methods the way Python
// binds them: by position, or by keyword.
#pragma once

#include <optional>
#include <string>

#include "ft/template/interpreter.h"

namespace ft::jinja {

inline const Value* find_kwarg(const CallArgs& a, const std::string& name) {
  for (const auto& [k, v] : a.kwargs)
    if (k == name) return &v;
  return nullptr;
}

// Argument `index` (counting after the operand) or keyword `name`; required
// when no default is given.
inline Value arg(Interpreter& in, const CallArgs& a, size_t index, const std::string& name,
                 std::optional<Value> dflt = std::nullopt) {
  if (index < a.args.size()) return a.args[index];
  if (const Value* v = find_kwarg(a, name)) return *v;
  if (!dflt) in.fail("missing required argument '" + name + "'");
  return *dflt;
}

inline std::string string_arg(Interpreter& in, const Value& v, const std::string& name) {
  if (!v.is_string()) in.fail("argument '" + name + "' must be a string, not " + v.type_name());
  return v.as_string();
}

inline int64_t int_arg(Interpreter& in, const Value& v, const std::string& name) {
  if (!v.is_int() && !v.is_bool())
    in.fail("argument '" + name + "' must be an integer, not " + v.type_name());
  return v.as_int();
}

}  // namespace ft::jinja
