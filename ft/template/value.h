// The dynamic value of the Jinja interpreter, with Python's semantics for what a
// chat template can observe: str() and repr() text, truthiness, equality and order,
// and the json.dumps text that transformers' tojson filter produces.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace ft::jinja {

class Value;
class Interpreter;
using List = std::vector<Value>;
// Insertion-ordered like a Python dict; keys are strings (JSON objects and the
// dict literals templates write).
using Dict = std::vector<std::pair<std::string, Value>>;

// Positional and keyword arguments of a call.
struct CallArgs {
  std::vector<Value> args;
  std::vector<std::pair<std::string, Value>> kwargs;
};

using Function = std::function<Value(Interpreter&, CallArgs&)>;

// Lists and dicts nest at most this deep. str(), tojson, == and the destructor all
// recurse through a value, so a template (or JSON input) may not build a deeper one.
constexpr int kMaxValueDepth = 512;

class Value {
 public:
  // Namespace is a Dict whose attributes can be assigned with `set ns.x = ...`.
  enum class Kind : uint8_t {
    Undefined,
    None,
    Bool,
    Int,
    Float,
    String,
    List,
    Dict,
    Function,
    Namespace
  };

  Value() = default;  // undefined
  static Value undefined(std::string hint = {});
  static Value none();
  Value(bool b);
  Value(int64_t i);
  Value(int i) : Value(static_cast<int64_t>(i)) {}
  Value(double f);
  Value(std::string s);
  Value(const char* s) : Value(std::string(s)) {}
  static Value list(List items = {}, bool tuple = false);
  static Value dict(Dict items = {});
  static Value namespace_(Dict items = {});
  static Value function(std::string name, Function fn);
  // Throws ft::Error for JSON nested deeper than kMaxValueDepth and for integers past
  // 64 bits.
  static Value from_json(const nlohmann::ordered_json& j);

  Kind kind() const { return kind_; }
  // Levels of lists and dicts, this one included (0 for a scalar), as built.
  int depth() const { return depth_; }
  bool is_undefined() const { return kind_ == Kind::Undefined; }
  bool is_none() const { return kind_ == Kind::None; }
  bool is_bool() const { return kind_ == Kind::Bool; }
  bool is_int() const { return kind_ == Kind::Int; }
  bool is_float() const { return kind_ == Kind::Float; }
  bool is_number() const {
    return kind_ == Kind::Int || kind_ == Kind::Float || kind_ == Kind::Bool;
  }
  bool is_string() const { return kind_ == Kind::String; }
  bool is_list() const { return kind_ == Kind::List; }
  bool is_tuple() const { return kind_ == Kind::List && tuple_; }
  bool is_dict() const { return kind_ == Kind::Dict; }
  bool is_namespace() const { return kind_ == Kind::Namespace; }
  bool is_mapping_like() const { return kind_ == Kind::Dict || kind_ == Kind::Namespace; }
  bool is_function() const { return kind_ == Kind::Function; }

  bool as_bool() const { return bool_; }
  int64_t as_int() const;    // Int or Bool
  double as_double() const;  // Int, Bool or Float
  const std::string& as_string() const { return str_; }
  // Why an undefined value is undefined ("'x' is undefined"), for error messages.
  const std::string& undefined_hint() const { return str_; }
  List& as_list() const { return *list_; }
  Dict& as_dict() const { return *dict_; }
  const std::string& function_name() const { return str_; }
  const Function& as_function() const { return *fn_; }

  // Dict/namespace lookup: nullptr when the key is missing.
  Value* find(const std::string& key) const;
  void set(const std::string& key, Value v) const;

  bool truthy() const;
  std::string str() const;   // Python str()
  std::string repr() const;  // Python repr()
  // json.dumps(x, ensure_ascii=False, indent=indent, separators=..., sort_keys=...);
  // indent < 0 means None. Throws ft::Error for values JSON cannot hold.
  std::string to_json(int indent = -1, const std::string* item_sep = nullptr,
                      const std::string* key_sep = nullptr, bool sort_keys = false) const;
  // Python's type name as in its error messages ("dict", "str", "NoneType").
  std::string type_name() const;

 private:
  static Value from_json_at(const nlohmann::ordered_json& j, int depth);

  Kind kind_ = Kind::Undefined;
  bool bool_ = false;
  bool tuple_ = false;
  uint16_t depth_ = 0;
  int64_t int_ = 0;
  double float_ = 0;
  std::string str_;  // string, undefined hint, or function name
  std::shared_ptr<List> list_;
  std::shared_ptr<Dict> dict_;
  std::shared_ptr<Function> fn_;
};

// Python's ==, with 1 == 1.0 == True and deep comparison of lists and dicts.
bool equals(const Value& a, const Value& b);
// Python's <, for numbers, strings and lists; throws for other types.
bool less(const Value& a, const Value& b);
// Python's repr of a float ("1.0", "0.1", "1e-05", "1.5e+20").
std::string float_repr(double f);

// UTF-8 helpers: Python indexes strings by code point.
std::u32string utf8_decode(const std::string& s);
std::string utf8_encode(const std::u32string& s);
std::string utf8_encode(char32_t c);

}  // namespace ft::jinja
