// Jinja's filters and tests, with transformers' tojson in place of Jinja's.
#include <algorithm>
#include <cmath>

#include "ft/core/error.h"
#include "ft/template/args.h"
#include "ft/template/integers.h"
#include "ft/template/interpreter.h"
#include "ft/template/strings.h"

namespace ft::jinja {

namespace {

constexpr int64_t kMaxIndent = 4096;  // tojson's indent: wider is surely a mistake

// Python's int(x) of a float: an error where Python raises one or would need a big
// integer, instead of the undefined behaviour of a C++ conversion out of range.
int64_t float_to_int(Interpreter& in, double x) {
  if (std::isnan(x)) in.fail("cannot convert float NaN to integer");
  if (std::isinf(x)) in.fail("cannot convert float infinity to integer");
  // 2^63 is exactly representable; every double below it in magnitude fits.
  if (!(x > -9223372036854775808.0 && x < 9223372036854775808.0))
    in.fail("int(" + float_repr(x) + ") does not fit in 64 bits, which template integers have");
  return static_cast<int64_t>(x);
}

// Jinja's attribute getter for filters: "a.b.0" walks item by item.
Value get_path(Interpreter& in, const Value& v, const Value& path) {
  if (path.is_int()) return in.get_item(v, path);
  std::string p = string_arg(in, path, "attribute");
  Value cur = v;
  size_t start = 0;
  while (true) {
    size_t dot = p.find('.', start);
    std::string part = p.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    // Jinja reads an all-digit part as an index; one past 18 digits indexes nothing.
    bool numeric =
        !part.empty() && part.size() <= 18 && std::all_of(part.begin(), part.end(), ::isdigit);
    cur = in.get_item(cur, numeric ? Value(static_cast<int64_t>(std::stoll(part))) : Value(part));
    if (dot == std::string::npos) return cur;
    if (cur.is_undefined()) return cur;
    start = dot + 1;
  }
}

// Sort key for sort/unique/dictsort/min/max: strings fold case unless asked not to.
Value sort_key(const Value& v, bool case_sensitive) {
  if (!case_sensitive && v.is_string()) return Value(py_lower(v.as_string()));
  return v;
}

// The test named in select/reject/selectattr/rejectattr, applied with the
// remaining positional arguments.
bool run_test(Interpreter& in, const Value& v, const CallArgs& a, size_t test_index) {
  if (test_index >= a.args.size()) return v.truthy();
  std::string test = string_arg(in, a.args[test_index], "test");
  CallArgs rest;
  rest.args.assign(a.args.begin() + static_cast<long>(test_index) + 1, a.args.end());
  return in.apply_test(test, v, rest);
}

List sorted(Interpreter& in, List items, bool reverse, bool case_sensitive,
            const Value* attribute) {
  auto key = [&](const Value& v) {
    return sort_key(attribute ? get_path(in, v, *attribute) : v, case_sensitive);
  };
  try {
    std::stable_sort(items.begin(), items.end(), [&](const Value& x, const Value& y) {
      return reverse ? less(key(y), key(x)) : less(key(x), key(y));
    });
  } catch (const Error& e) {
    in.fail(e.fact());
  }
  return items;
}

std::string html_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&#34;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

// Python's round(x, n) with ties to even, as Jinja's "common" rounding uses.
double py_round(double x, int64_t digits) {
  double scale = std::pow(10.0, static_cast<double>(digits));
  double y = x * scale;
  double r = std::nearbyint(y);  // default rounding mode: ties to even
  return r / scale;
}

const char* const filter_names[] = {
    "trim",     "tojson",  "length", "count",   "items", "selectattr", "rejectattr", "select",
    "reject",   "map",     "join",   "default", "d",     "upper",      "lower",      "capitalize",
    "title",    "replace", "first",  "last",    "list",  "string",     "safe",       "escape",
    "e",        "int",     "float",  "abs",     "round", "indent",     "unique",     "sort",
    "dictsort", "reverse", "sum",    "min",     "max",   "attr",       "center",     "wordcount"};
const char* const test_names[] = {
    "defined", "undefined", "none",  "string",  "number",      "integer",  "float",
    "boolean", "true",      "false", "mapping", "iterable",    "sequence", "callable",
    "equalto", "eq",        "==",    "ne",      "!=",          "lt",       "lessthan",
    "<",       "le",        "<=",    "gt",      "greaterthan", ">",        "ge",
    ">=",      "in",        "odd",   "even",    "divisibleby", "sameas",   "lower",
    "upper",   "escaped"};

}  // namespace

bool is_filter(const std::string& name) {
  return std::find(std::begin(filter_names), std::end(filter_names), name) !=
         std::end(filter_names);
}

bool is_test(const std::string& name) {
  return std::find(std::begin(test_names), std::end(test_names), name) != std::end(test_names);
}

Value Interpreter::apply_filter(const std::string& name, const Value& v, CallArgs& a) {
  auto flag = [&](size_t index, const char* kw, bool dflt) {
    return arg(*this, a, index, kw, Value(dflt)).truthy();
  };
  if (name == "trim") {
    Value chars = arg(*this, a, 0, "chars", Value::none());
    std::string set = chars.is_none() ? "" : string_arg(*this, chars, "chars");
    return Value(py_strip(v.str(), chars.is_none() ? nullptr : &set, true, true));
  }
  if (name == "tojson") {
    Value indent = arg(*this, a, 0, "indent", Value::none());
    Value separators = arg(*this, a, 2, "separators", Value::none());
    bool sort_keys = flag(3, "sort_keys", false);
    std::string item_sep, key_sep;
    if (!separators.is_none()) {
      if (!separators.is_list() || separators.as_list().size() != 2)
        fail("separators must be a pair of strings");
      item_sep = string_arg(*this, separators.as_list()[0], "separators");
      key_sep = string_arg(*this, separators.as_list()[1], "separators");
    }
    const int64_t width = indent.is_none() ? -1 : int_arg(*this, indent, "indent");
    if (width > kMaxIndent)
      fail("tojson indent " + std::to_string(width) + " is wider than ft supports (" +
           std::to_string(kMaxIndent) + ")");
    try {
      return Value(v.to_json(static_cast<int>(std::max<int64_t>(width, -1)),
                             separators.is_none() ? nullptr : &item_sep,
                             separators.is_none() ? nullptr : &key_sep, sort_keys));
    } catch (const Error& e) {
      fail(e.fact());
    }
  }
  if (name == "length" || name == "count") {
    if (v.is_string()) return Value(static_cast<int64_t>(utf8_decode(v.as_string()).size()));
    if (v.is_list()) return Value(static_cast<int64_t>(v.as_list().size()));
    if (v.is_mapping_like()) return Value(static_cast<int64_t>(v.as_dict().size()));
    if (v.is_undefined()) return Value(int64_t{0});
    fail("object of type '" + v.type_name() + "' has no len()");
  }
  if (name == "items") {
    if (v.is_undefined()) return Value::list();
    if (!v.is_mapping_like()) fail("Can only get item pairs from a mapping.");
    List out;
    for (const auto& [k, x] : v.as_dict()) out.push_back(Value::list({Value(k), x}, true));
    return Value::list(std::move(out));
  }
  if (name == "selectattr" || name == "rejectattr" || name == "select" || name == "reject") {
    bool by_attr = name == "selectattr" || name == "rejectattr";
    bool keep = name == "selectattr" || name == "select";
    List out;
    for (const Value& item : iterate(v)) {
      Value probe = by_attr ? get_path(*this, item, arg(*this, a, 0, "attribute")) : item;
      if (run_test(*this, probe, a, by_attr ? 1 : 0) == keep) out.push_back(item);
    }
    return Value::list(std::move(out));
  }
  if (name == "map") {
    List out;
    if (const Value* attribute = find_kwarg(a, "attribute")) {
      const Value* dflt = find_kwarg(a, "default");
      for (const Value& item : iterate(v)) {
        Value x = get_path(*this, item, *attribute);
        out.push_back(x.is_undefined() && dflt ? *dflt : x);
      }
    } else {
      std::string filter = string_arg(*this, arg(*this, a, 0, "filter"), "filter");
      CallArgs rest;
      rest.args.assign(a.args.begin() + 1, a.args.end());
      rest.kwargs = a.kwargs;
      for (const Value& item : iterate(v)) out.push_back(apply_filter(filter, item, rest));
    }
    return Value::list(std::move(out));
  }
  if (name == "join") {
    std::string sep = arg(*this, a, 0, "d", Value("")).str();
    Value attribute = arg(*this, a, 1, "attribute", Value::none());
    std::string out;
    List items = iterate(v);
    for (size_t i = 0; i < items.size(); ++i) {
      const std::string item =
          (attribute.is_none() ? items[i] : get_path(*this, items[i], attribute)).str();
      check_text_size(out.size() + (i ? sep.size() : 0) + item.size());
      out += (i ? sep : "") + item;
    }
    return Value(out);
  }
  if (name == "default" || name == "d") {
    Value dflt = arg(*this, a, 0, "default_value", Value(""));
    bool boolean = flag(1, "boolean", false);
    if (v.is_undefined() || (boolean && !v.truthy())) return dflt;
    return v;
  }
  if (name == "upper") return Value(py_upper(v.str()));
  if (name == "lower") return Value(py_lower(v.str()));
  if (name == "capitalize") return Value(py_capitalize(v.str()));
  if (name == "title") {
    // Jinja's title: words start after whitespace, '-', and opening brackets.
    std::u32string u = utf8_decode(v.str());
    bool start = true;
    std::string out;
    for (char32_t c : u) {
      std::string one = utf8_encode(c);
      bool boundary = is_py_space(c) || c == '-' || c == '(' || c == '{' || c == '[' || c == '<';
      out += boundary ? one : (start ? py_upper(one) : py_lower(one));
      start = boundary;
    }
    return Value(out);
  }
  if (name == "replace") {
    std::string from = arg(*this, a, 0, "old").str(), to = arg(*this, a, 1, "new").str();
    Value count = arg(*this, a, 2, "count", Value::none());
    const std::string text = v.str();
    const int64_t limit = count.is_none() ? -1 : int_arg(*this, count, "count");
    // The result's size is checked before it is built: an empty `from` matches
    // around every character.
    uint64_t matches = 0;
    if (from.empty()) {
      matches = py_length(text) + 1;
    } else {
      for (size_t at = text.find(from); at != std::string::npos;
           at = text.find(from, at + from.size()))
        ++matches;
    }
    if (limit >= 0) matches = std::min<uint64_t>(matches, static_cast<uint64_t>(limit));
    // Both factors are below kMaxTextBytes + 2, so the product fits in 64 bits.
    if (to.size() > from.size()) check_text_size(text.size() + matches * (to.size() - from.size()));
    return Value(py_replace(text, from, to, static_cast<long>(limit)));
  }
  if (name == "first" || name == "last") {
    List items = iterate(v);
    if (items.empty()) return Value::undefined("No first item, sequence was empty.");
    return name == "first" ? items.front() : items.back();
  }
  if (name == "list") return Value::list(iterate(v));
  if (name == "string") return Value(v.str());
  if (name == "safe") return v;
  if (name == "escape" || name == "e") return Value(html_escape(v.str()));
  if (name == "int") {
    Value dflt = arg(*this, a, 0, "default", Value(int64_t{0}));
    if (v.is_bool() || v.is_int()) return Value(v.as_int());
    if (v.is_float()) return Value(float_to_int(*this, v.as_double()));
    if (v.is_string()) {
      std::string s = py_strip(v.as_string(), nullptr, true, true);
      try {
        size_t used = 0;
        int64_t i = std::stoll(
            s, &used,
            static_cast<int>(int_arg(*this, arg(*this, a, 1, "base", Value(10)), "base")));
        if (used == s.size()) return Value(i);
      } catch (const std::exception&) {
      }
      try {
        size_t used = 0;
        double f = std::stod(s, &used);
        if (used == s.size()) return Value(float_to_int(*this, f));
      } catch (const std::exception&) {
      }
    }
    return dflt;
  }
  if (name == "float") {
    Value dflt = arg(*this, a, 0, "default", Value(0.0));
    if (v.is_number()) return Value(v.as_double());
    if (v.is_string()) {
      std::string s = py_strip(v.as_string(), nullptr, true, true);
      try {
        size_t used = 0;
        double f = std::stod(s, &used);
        if (used == s.size()) return Value(f);
      } catch (const std::exception&) {
      }
    }
    return dflt;
  }
  if (name == "abs") {
    if (!v.is_number()) fail("bad operand type for abs(): '" + v.type_name() + "'");
    if (v.is_float()) return Value(std::fabs(v.as_double()));
    auto magnitude = int_abs(v.as_int());
    if (!magnitude)
      fail("integer overflow in abs(" + v.repr() + ") (template integers are 64-bit)");
    return Value(*magnitude);
  }
  if (name == "round") {
    int64_t precision = int_arg(*this, arg(*this, a, 0, "precision", Value(0)), "precision");
    std::string method = arg(*this, a, 1, "method", Value("common")).str();
    if (!v.is_number()) fail("round() expects a number, not " + v.type_name());
    double x = v.as_double(), scale = std::pow(10.0, static_cast<double>(precision));
    if (method == "common") return Value(py_round(x, precision));
    if (method == "ceil") return Value(std::ceil(x * scale) / scale);
    if (method == "floor") return Value(std::floor(x * scale) / scale);
    fail("method must be common, ceil or floor");
  }
  if (name == "indent") {
    Value width = arg(*this, a, 0, "width", Value(4));
    if (!width.is_string())
      check_text_size(static_cast<uint64_t>(std::max<int64_t>(int_arg(*this, width, "width"), 0)));
    std::string pad =
        width.is_string()
            ? width.as_string()
            : std::string(static_cast<size_t>(std::max<int64_t>(int_arg(*this, width, "width"), 0)),
                          ' ');
    bool first = flag(1, "first", false), blank = flag(2, "blank", false);
    std::vector<std::string> lines = py_splitlines(v.str() + "\n");
    std::string out;
    for (size_t i = 0; i < lines.size(); ++i) {
      check_text_size(out.size() + 1 + pad.size() * 2 + lines[i].size());
      if (i) out += "\n";
      if (i > 0 && (blank || !lines[i].empty())) out += pad;
      out += lines[i];
    }
    return Value(first ? pad + out : out);
  }
  if (name == "unique") {
    bool case_sensitive = flag(0, "case_sensitive", false);
    Value attribute = arg(*this, a, 1, "attribute", Value::none());
    List out, seen;
    for (const Value& item : iterate(v)) {
      Value key =
          sort_key(attribute.is_none() ? item : get_path(*this, item, attribute), case_sensitive);
      if (std::none_of(seen.begin(), seen.end(), [&](const Value& s) { return equals(s, key); })) {
        seen.push_back(key);
        out.push_back(item);
      }
    }
    return Value::list(std::move(out));
  }
  if (name == "sort") {
    Value attribute = arg(*this, a, 2, "attribute", Value::none());
    return Value::list(sorted(*this, iterate(v), flag(0, "reverse", false),
                              flag(1, "case_sensitive", false),
                              attribute.is_none() ? nullptr : &attribute));
  }
  if (name == "dictsort") {
    if (!v.is_mapping_like()) fail("dictsort expects a mapping, not " + v.type_name());
    bool case_sensitive = flag(0, "case_sensitive", false);
    std::string by = arg(*this, a, 1, "by", Value("key")).str();
    bool reverse = flag(2, "reverse", false);
    List pairs;
    for (const auto& [k, x] : v.as_dict()) pairs.push_back(Value::list({Value(k), x}, true));
    Value index(static_cast<int64_t>(by == "value" ? 1 : 0));
    return Value::list(sorted(*this, std::move(pairs), reverse, case_sensitive, &index));
  }
  if (name == "reverse") {
    if (v.is_string()) {
      std::u32string u = utf8_decode(v.as_string());
      std::reverse(u.begin(), u.end());
      return Value(utf8_encode(u));
    }
    List items = iterate(v);
    std::reverse(items.begin(), items.end());
    return Value::list(std::move(items));
  }
  if (name == "sum") {
    Value attribute = arg(*this, a, 0, "attribute", Value::none());
    Value total = arg(*this, a, 1, "start", Value(int64_t{0}));
    for (const Value& item : iterate(v)) {
      Value x = attribute.is_none() ? item : get_path(*this, item, attribute);
      if (!x.is_number() || !total.is_number()) fail("sum() can only add numbers");
      if (x.is_float() || total.is_float()) {
        total = Value(total.as_double() + x.as_double());
        continue;
      }
      auto sum = int_add(total.as_int(), x.as_int());
      if (!sum) fail_overflow(total, "+", x);
      total = Value(*sum);
    }
    return total;
  }
  if (name == "min" || name == "max") {
    Value attribute = arg(*this, a, 1, "attribute", Value::none());
    List items = sorted(*this, iterate(v), false, flag(0, "case_sensitive", false),
                        attribute.is_none() ? nullptr : &attribute);
    if (items.empty()) return Value::undefined("No aggregated item, sequence was empty.");
    return name == "min" ? items.front() : items.back();
  }
  if (name == "attr") return get_attr(v, string_arg(*this, arg(*this, a, 0, "name"), "name"));
  if (name == "center") {
    int64_t width = int_arg(*this, arg(*this, a, 0, "width", Value(80)), "width");
    std::string s = v.str();
    int64_t n = static_cast<int64_t>(py_length(s));
    if (width <= n) return Value(s);
    check_text_size(s.size() + static_cast<uint64_t>(width - n));
    int64_t total = width - n, left = total / 2 + (total & width & 1);
    return Value(std::string(static_cast<size_t>(left), ' ') + s +
                 std::string(static_cast<size_t>(total - left), ' '));
  }
  if (name == "wordcount")
    return Value(static_cast<int64_t>(py_split(v.str(), nullptr, -1).size()));
  fail("no filter named '" + name + "'");
}

bool Interpreter::apply_test(const std::string& name, const Value& v, CallArgs& a) {
  auto other = [&]() { return arg(*this, a, 0, "other"); };
  if (name == "defined") return !v.is_undefined();
  if (name == "undefined") return v.is_undefined();
  if (name == "none") return v.is_none();
  if (name == "string") return v.is_string();
  if (name == "number") return v.is_number();
  if (name == "integer") return v.is_int();
  if (name == "float") return v.is_float();
  if (name == "boolean") return v.is_bool();
  if (name == "true") return v.is_bool() && v.as_bool();
  if (name == "false") return v.is_bool() && !v.as_bool();
  if (name == "mapping") return v.is_dict();
  if (name == "iterable") return v.is_list() || v.is_dict() || v.is_string() || v.is_undefined();
  if (name == "sequence") return v.is_list() || v.is_dict() || v.is_string();
  if (name == "callable") return v.is_function();
  if (name == "equalto" || name == "eq" || name == "==") return equals(v, other());
  if (name == "ne" || name == "!=") return !equals(v, other());
  if (name == "lt" || name == "lessthan" || name == "<" || name == "le" || name == "<=" ||
      name == "gt" || name == "greaterthan" || name == ">" || name == "ge" || name == ">=") {
    Value o = other();
    try {
      if (name == "lt" || name == "lessthan" || name == "<") return less(v, o);
      if (name == "le" || name == "<=") return !less(o, v);
      if (name == "gt" || name == "greaterthan" || name == ">") return less(o, v);
      return !less(v, o);
    } catch (const Error& e) {
      fail(e.fact());
    }
  }
  if (name == "in") {
    Value seq = other();
    if (seq.is_string())
      return v.is_string() && seq.as_string().find(v.as_string()) != std::string::npos;
    if (seq.is_mapping_like()) return v.is_string() && seq.find(v.as_string());
    for (const Value& x : iterate(seq))
      if (equals(v, x)) return true;
    return false;
  }
  if (name == "odd" || name == "even" || name == "divisibleby") {
    if (!v.is_int() && !v.is_bool())
      fail("test '" + name + "' expects an integer, not " + v.type_name());
    if (name == "divisibleby") {
      int64_t d = int_arg(*this, arg(*this, a, 0, "num"), "num");
      if (d == 0) fail("integer division or modulo by zero");
      return v.as_int() % d == 0;
    }
    return (v.as_int() % 2 != 0) == (name == "odd");
  }
  if (name == "sameas") {
    Value o = other();
    if (v.kind() != o.kind()) return false;
    if (v.is_list()) return &v.as_list() == &o.as_list();
    if (v.is_mapping_like()) return &v.as_dict() == &o.as_dict();
    return equals(v, o);
  }
  if (name == "lower")
    return v.is_string() && py_upper(v.as_string()) != v.as_string() &&
           py_lower(v.as_string()) == v.as_string();
  if (name == "upper")
    return v.is_string() && py_lower(v.as_string()) != v.as_string() &&
           py_upper(v.as_string()) == v.as_string();
  if (name == "escaped") return false;
  fail("no test named '" + name + "'");
}

}  // namespace ft::jinja
