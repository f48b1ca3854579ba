// Attribute and item access, calls, the global functions transformers gives chat
// templates, and the str/dict methods the sandbox lets templates call.
#include <algorithm>
#include <chrono>
#include <ctime>

#include "ft/core/error.h"
#include "ft/template/args.h"
#include "ft/template/interpreter.h"
#include "ft/template/strings.h"

namespace ft::jinja {

namespace {

Value string_list(const std::vector<std::string>& parts) {
  List items;
  for (const auto& p : parts) items.emplace_back(p);
  return Value::list(std::move(items));
}

bool matches_affix(Interpreter& in, const std::string& s, const Value& affix, bool prefix) {
  auto one = [&](const Value& a) {
    if (!a.is_string())
      in.fail(std::string(prefix ? "startswith" : "endswith") +
              " first arg must be str or a tuple of str");
    const std::string& x = a.as_string();
    return x.size() <= s.size() && s.compare(prefix ? 0 : s.size() - x.size(), x.size(), x) == 0;
  };
  if (affix.is_list()) {
    for (const Value& a : affix.as_list())
      if (one(a)) return true;
    return false;
  }
  return one(affix);
}

// str.format with {} / {0} / {name} fields and {{ }} escapes (no format specs).
std::string py_format(Interpreter& in, const std::string& fmt, CallArgs& a) {
  std::string out;
  size_t auto_index = 0;
  for (size_t i = 0; i < fmt.size(); ++i) {
    char c = fmt[i];
    if (c == '}' && i + 1 < fmt.size() && fmt[i + 1] == '}') {
      out += '}';
      ++i;
    } else if (c == '{' && i + 1 < fmt.size() && fmt[i + 1] == '{') {
      out += '{';
      ++i;
    } else if (c == '{') {
      size_t close = fmt.find('}', i);
      if (close == std::string::npos) in.fail("Single '{' encountered in format string");
      std::string field = fmt.substr(i + 1, close - i - 1);
      if (field.find(':') != std::string::npos || field.find('!') != std::string::npos)
        in.fail("format specifications in str.format are not supported");
      Value v;
      if (field.empty()) {
        if (auto_index >= a.args.size())
          in.fail("Replacement index " + std::to_string(auto_index) + " out of range");
        v = a.args[auto_index++];
      } else if (std::isdigit(static_cast<unsigned char>(field[0]))) {
        if (field.size() > 9 || !std::all_of(field.begin(), field.end(), ::isdigit) ||
            std::stoul(field) >= a.args.size())
          in.fail("Replacement index " + field.substr(0, 20) + " out of range");
        size_t k = std::stoul(field);
        v = a.args[k];
      } else {
        const Value* found = find_kwarg(a, field);
        if (!found) in.fail("KeyError: '" + field + "'");
        v = *found;
      }
      out += v.str();
      i = close;
    } else {
      out += c;
    }
  }
  return out;
}

// A method of a str, or nullopt when str has no such method.
std::optional<Value> string_method(const Value& self, const std::string& name) {
  const std::string s = self.as_string();
  auto method = [&](auto body) {
    return Value::function("str." + name,
                           [s, body](Interpreter& in, CallArgs& a) { return body(in, s, a); });
  };
  if (name == "strip" || name == "lstrip" || name == "rstrip") {
    bool left = name != "rstrip", right = name != "lstrip";
    return method([left, right](Interpreter& in, const std::string& s, CallArgs& a) {
      Value chars = arg(in, a, 0, "chars", Value::none());
      std::string set = chars.is_none() ? "" : string_arg(in, chars, "chars");
      return Value(py_strip(s, chars.is_none() ? nullptr : &set, left, right));
    });
  }
  if (name == "split" || name == "rsplit") {
    return method([name](Interpreter& in, const std::string& s, CallArgs& a) {
      Value sep = arg(in, a, 0, "sep", Value::none());
      long maxsplit =
          static_cast<long>(int_arg(in, arg(in, a, 1, "maxsplit", Value(-1)), "maxsplit"));
      std::string sep_text = sep.is_none() ? "" : string_arg(in, sep, "sep");
      if (!sep.is_none() && sep_text.empty()) in.fail("empty separator");
      if (name == "rsplit" && maxsplit >= 0) in.fail("rsplit with maxsplit is not supported");
      return string_list(py_split(s, sep.is_none() ? nullptr : &sep_text, maxsplit));
    });
  }
  if (name == "splitlines")
    return method([](Interpreter&, const std::string& s, CallArgs&) {
      return string_list(py_splitlines(s));
    });
  if (name == "startswith" || name == "endswith") {
    bool prefix = name == "startswith";
    return method([prefix](Interpreter& in, const std::string& s, CallArgs& a) {
      return Value(matches_affix(in, s, arg(in, a, 0, "prefix"), prefix));
    });
  }
  if (name == "upper")
    return method([](Interpreter&, const std::string& s, CallArgs&) { return Value(py_upper(s)); });
  if (name == "lower")
    return method([](Interpreter&, const std::string& s, CallArgs&) { return Value(py_lower(s)); });
  if (name == "title")
    return method([](Interpreter&, const std::string& s, CallArgs&) { return Value(py_title(s)); });
  if (name == "capitalize")
    return method(
        [](Interpreter&, const std::string& s, CallArgs&) { return Value(py_capitalize(s)); });
  if (name == "replace") {
    return method([](Interpreter& in, const std::string& s, CallArgs& a) {
      std::string from = string_arg(in, arg(in, a, 0, "old"), "old");
      std::string to = string_arg(in, arg(in, a, 1, "new"), "new");
      long count = static_cast<long>(int_arg(in, arg(in, a, 2, "count", Value(-1)), "count"));
      return Value(py_replace(s, from, to, count));
    });
  }
  if (name == "find" || name == "rfind" || name == "count") {
    return method([name](Interpreter& in, const std::string& s, CallArgs& a) {
      std::string sub = string_arg(in, arg(in, a, 0, "sub"), "sub");
      if (name == "count") {
        if (sub.empty()) return Value(static_cast<int64_t>(py_length(s) + 1));
        int64_t n = 0;
        for (size_t p = s.find(sub); p != std::string::npos; p = s.find(sub, p + sub.size())) ++n;
        return Value(n);
      }
      size_t p = name == "find" ? s.find(sub) : s.rfind(sub);
      return Value(p == std::string::npos ? int64_t{-1}
                                          : static_cast<int64_t>(py_length(s.substr(0, p))));
    });
  }
  if (name == "join") {
    return method([](Interpreter& in, const std::string& s, CallArgs& a) {
      std::string out;
      List items = in.iterate(arg(in, a, 0, "iterable"));
      for (size_t i = 0; i < items.size(); ++i) {
        if (!items[i].is_string())
          in.fail("sequence item " + std::to_string(i) + ": expected str instance, " +
                  items[i].type_name() + " found");
        out += (i ? s : "") + items[i].as_string();
      }
      return Value(out);
    });
  }
  if (name == "removeprefix" || name == "removesuffix") {
    bool prefix = name == "removeprefix";
    return method([prefix](Interpreter& in, const std::string& s, CallArgs& a) {
      std::string x = string_arg(in, arg(in, a, 0, prefix ? "prefix" : "suffix"), "affix");
      if (!matches_affix(in, s, Value(x), prefix)) return Value(s);
      return Value(prefix ? s.substr(x.size()) : s.substr(0, s.size() - x.size()));
    });
  }
  if (name == "isspace" || name == "isdigit" || name == "isalpha" || name == "isalnum" ||
      name == "isupper" || name == "islower") {
    return method([name](Interpreter&, const std::string& s, CallArgs&) {
      std::u32string u = utf8_decode(s);
      if (u.empty()) return Value(false);
      bool any_cased = false;
      for (char32_t c : u) {
        bool ok = true;
        if (name == "isspace")
          ok = is_py_space(c);
        else if (name == "isdigit")
          ok = c >= '0' && c <= '9';
        else if (name == "isalpha")
          ok = c >= 0x80 || std::isalpha(static_cast<int>(c));
        else if (name == "isalnum")
          ok = c >= 0x80 || std::isalnum(static_cast<int>(c));
        else {
          std::string one = utf8_encode(c);
          bool upper = py_lower(one) != one, lower = py_upper(one) != one;
          any_cased = any_cased || upper || lower;
          ok = name == "isupper" ? !lower : !upper;
        }
        if (!ok) return Value(false);
      }
      return Value(name == "isupper" || name == "islower" ? any_cased : true);
    });
  }
  if (name == "format") {
    return method([](Interpreter& in, const std::string& s, CallArgs& a) {
      return Value(py_format(in, s, a));
    });
  }
  return std::nullopt;
}

std::optional<Value> dict_method(const Value& self, const std::string& name) {
  if (name == "items" || name == "keys" || name == "values") {
    return Value::function("dict." + name, [self, name](Interpreter&, CallArgs&) {
      List out;
      for (const auto& [k, v] : self.as_dict()) {
        if (name == "items")
          out.push_back(Value::list({Value(k), v}, true));
        else if (name == "keys")
          out.emplace_back(k);
        else
          out.push_back(v);
      }
      return Value::list(std::move(out));
    });
  }
  if (name == "get") {
    return Value::function("dict.get", [self](Interpreter& in, CallArgs& a) {
      Value key = arg(in, a, 0, "key");
      Value dflt = arg(in, a, 1, "default", Value::none());
      if (!key.is_string()) return dflt;
      Value* v = self.find(key.as_string());
      return v ? *v : dflt;
    });
  }
  return std::nullopt;
}

bool is_mutator(const std::string& name) {
  static const char* names[] = {"append",  "extend", "insert",     "pop",     "remove",
                                "clear",   "update", "setdefault", "popitem", "sort",
                                "reverse", "add",    "discard"};
  for (const char* n : names)
    if (name == n) return true;
  return false;
}

// Jinja's message for a missing attribute: "'dict object' has no attribute 'x'".
Value no_attribute(const std::string& type, const std::string& name) {
  std::string hint = "'";
  hint += type;
  hint += " object' has no attribute '";
  hint += name;
  hint += "'";
  return Value::undefined(hint);
}

}  // namespace

Value Interpreter::get_attr(const Value& obj, const std::string& name) {
  switch (obj.kind()) {
    case Value::Kind::Undefined:
      fail(obj.undefined_hint());
    case Value::Kind::Dict: {
      if (auto m = dict_method(obj, name)) return *m;
      if (is_mutator(name)) fail("access to attribute '" + name + "' of 'dict' object is unsafe.");
      if (Value* v = obj.find(name)) return *v;
      return no_attribute("dict", name);
    }
    case Value::Kind::Namespace: {
      if (Value* v = obj.find(name)) return *v;
      return no_attribute("Namespace", name);
    }
    case Value::Kind::String:
      if (auto m = string_method(obj, name)) return *m;
      break;
    case Value::Kind::List:
      if (is_mutator(name))
        fail("access to attribute '" + name + "' of '" + obj.type_name() + "' object is unsafe.");
      break;
    default:
      break;
  }
  return no_attribute(obj.type_name(), name);
}

Value Interpreter::get_item(const Value& obj, const Value& key) {
  if (obj.is_undefined()) fail(obj.undefined_hint());
  if (obj.is_mapping_like()) {
    if (key.is_string()) {
      if (Value* v = obj.find(key.as_string())) return *v;
      if (obj.is_dict())
        if (auto m = dict_method(obj, key.as_string())) return *m;
    }
    return no_attribute(obj.is_dict() ? "dict" : "Namespace", key.str());
  }
  if ((obj.is_list() || obj.is_string()) && (key.is_int() || key.is_bool())) {
    int64_t i = key.as_int();
    if (obj.is_list()) {
      int64_t n = static_cast<int64_t>(obj.as_list().size());
      if (i < 0) i += n;
      if (i >= 0 && i < n) return obj.as_list()[static_cast<size_t>(i)];
    } else {
      std::u32string u = utf8_decode(obj.as_string());
      int64_t n = static_cast<int64_t>(u.size());
      if (i < 0) i += n;
      if (i >= 0 && i < n) return Value(utf8_encode(u[static_cast<size_t>(i)]));
    }
    return Value::undefined(obj.type_name() + " object has no element " + key.str());
  }
  if (key.is_string()) return get_attr(obj, key.as_string());
  return no_attribute(obj.type_name(), key.str());
}

List Interpreter::iterate(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::Undefined:
      return {};
    case Value::Kind::List:
      return v.as_list();
    case Value::Kind::Dict: {
      List keys;
      for (const auto& [k, _] : v.as_dict()) keys.emplace_back(k);
      return keys;
    }
    case Value::Kind::String: {
      List chars;
      for (char32_t c : utf8_decode(v.as_string())) chars.emplace_back(utf8_encode(c));
      return chars;
    }
    default:
      fail("'" + v.type_name() + "' object is not iterable");
  }
}

Value Interpreter::call(const Value& callee, CallArgs& args) {
  if (callee.is_undefined()) fail(callee.undefined_hint());
  if (!callee.is_function()) fail("'" + callee.type_name() + "' object is not callable");
  return callee.as_function()(*this, args);
}

std::optional<Value> Interpreter::builtin_global(const std::string& name) {
  if (name == "raise_exception") {
    // transformers raises jinja2's TemplateError with the message alone.
    return Value::function(name, [](Interpreter& in, CallArgs& a) -> Value {
      throw Error("template", arg(in, a, 0, "message").str());
    });
  }
  if (name == "namespace" || name == "dict") {
    bool ns = name == "namespace";
    return Value::function(name, [ns](Interpreter& in, CallArgs& a) {
      Value out = ns ? Value::namespace_() : Value::dict();
      for (const Value& init : a.args) {
        if (!init.is_mapping_like())
          in.fail(std::string(ns ? "namespace" : "dict") +
                  "() takes mappings as positional arguments");
        for (const auto& [k, v] : init.as_dict()) out.set(k, v);
      }
      for (const auto& [k, v] : a.kwargs) {
        if (ns && !k.empty() && k[0] == '_')
          in.fail(
              "Chat templates cannot store underscore-prefixed attributes on a namespace, but got "
              "'" +
              k + "'.");
        out.set(k, v);
      }
      return out;
    });
  }
  if (name == "range") {
    return Value::function(name, [](Interpreter& in, CallArgs& a) {
      if (a.args.empty() || a.args.size() > 3) in.fail("range expected 1 to 3 arguments");
      int64_t start = 0, stop, step = 1;
      if (a.args.size() == 1) {
        stop = int_arg(in, a.args[0], "stop");
      } else {
        start = int_arg(in, a.args[0], "start");
        stop = int_arg(in, a.args[1], "stop");
        if (a.args.size() == 3) step = int_arg(in, a.args[2], "step");
      }
      if (step == 0) in.fail("range() arg 3 must not be zero");
      List out;
      for (int64_t i = start; step > 0 ? i < stop : i > stop;) {
        out.emplace_back(i);
        if (out.size() > 100000) in.fail("range too big");
        if (__builtin_add_overflow(i, step, &i)) break;  // past INT64's ends: past stop too
      }
      return Value::list(std::move(out));
    });
  }
  if (name == "strftime_now") {
    return Value::function(name, [](Interpreter& in, CallArgs& a) {
      std::string fmt = string_arg(in, arg(in, a, 0, "format"), "format");
      std::time_t now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
      std::tm local{};
      localtime_r(&now, &local);
      char buf[512];
      size_t n = std::strftime(buf, sizeof(buf), fmt.c_str(), &local);
      return Value(std::string(buf, n));
    });
  }
  return std::nullopt;
}

}  // namespace ft::jinja
