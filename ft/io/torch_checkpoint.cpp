#include "ft/io/torch_checkpoint.h"

#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <mlx/ops.h>  // defines: as_strided, contiguous

#include "ft/core/error.h"
#include "ft/io/tensor_bytes.h"
#include "ft/io/zip_reader.h"

namespace ft::io {

namespace fs = std::filesystem;

namespace {

constexpr const char* kPlace = "pytorch";

// The Python objects a state dict pickle builds, reduced to what ft needs.
struct Value;
using Ref = std::shared_ptr<Value>;
struct Value {
  enum class Kind {
    none,
    boolean,
    integer,
    real,
    string,
    bytes,
    tuple,
    list,
    dict,
    global,
    storage,
    tensor
  };
  Kind kind = Kind::none;
  int64_t integer = 0;
  double real = 0;
  std::string text;                          // string, bytes, global "module.name", storage key
  std::vector<Ref> items;                    // tuple, list; tensor: {storage}
  std::vector<std::pair<Ref, Ref>> entries;  // dict
  mx::Dtype dtype = mx::float32;             // storage
  uint64_t numel = 0;                        // storage
  int64_t offset = 0;                        // tensor
  std::vector<int64_t> shape, strides;       // tensor
};

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string out = "(";
  for (size_t i = 0; i < shape.size() && i < 8; ++i)
    out += (i ? ", " : "") + std::to_string(shape[i]);
  if (shape.size() > 8) out += ", ... " + std::to_string(shape.size()) + " dimensions";
  return out + ")";
}

std::optional<mx::Dtype> storage_dtype(const std::string& global) {
  static const std::map<std::string, mx::Dtype> types = {
      {"torch.FloatStorage", mx::float32},     {"torch.HalfStorage", mx::float16},
      {"torch.BFloat16Storage", mx::bfloat16}, {"torch.DoubleStorage", mx::float64},
      {"torch.LongStorage", mx::int64},        {"torch.IntStorage", mx::int32},
      {"torch.ShortStorage", mx::int16},       {"torch.CharStorage", mx::int8},
      {"torch.ByteStorage", mx::uint8},        {"torch.BoolStorage", mx::bool_}};
  auto it = types.find(global);
  if (it == types.end()) return std::nullopt;
  return it->second;
}

bool allowed_global(const std::string& name) {
  return name == "torch._utils._rebuild_tensor_v2" || name == "torch._utils._rebuild_parameter" ||
         name == "collections.OrderedDict" || storage_dtype(name).has_value();
}

class Unpickler {
 public:
  Unpickler(const std::string& data, std::string where) : data_(data), where_(std::move(where)) {}
  // A pickle can make a container hold itself (through the memo) or nest containers a
  // million deep; emptying every object first frees them one by one, without leaking
  // cycles or recursing through the chain.
  ~Unpickler() {
    for (const Ref& v : created_) {
      v->items.clear();
      v->entries.clear();
    }
  }
  Unpickler(const Unpickler&) = delete;
  Unpickler& operator=(const Unpickler&) = delete;

  Ref run() {
    while (true) {
      const uint8_t op = byte();
      switch (op) {
        case 0x80:
          byte();
          break;  // PROTO
        case 0x95:
          bytes(8);
          break;  // FRAME: sizes only matter to streaming readers
        case '.':
          FT_CHECK(stack_.size() == 1, kPlace, where_, ": pickle ends with ", stack_.size(),
                   " values on the stack");
          return stack_.back();
        case '(':
          marks_.push_back(stack_.size());
          break;
        case 'N':
          stack_.push_back(make(Value::Kind::none));
          break;
        case 0x88:
        case 0x89: {
          auto v = make(Value::Kind::boolean);
          v->integer = op == 0x88;
          stack_.push_back(v);
          break;
        }
        case 'K':
          push_int(static_cast<int64_t>(uint_le(1)));
          break;
        case 'M':
          push_int(static_cast<int64_t>(uint_le(2)));
          break;
        case 'J':
          push_int(static_cast<int32_t>(uint_le(4)));
          break;
        case 0x8a: {  // LONG1: n-byte little-endian two's complement
          const size_t n = byte();
          FT_CHECK(n <= 8, kPlace, where_, ": integer of ", n, " bytes is too large");
          uint64_t v = n ? uint_le(n) : 0;
          if (n && n < 8 && (v >> (8 * n - 1)) & 1) v |= ~uint64_t{0} << (8 * n);
          push_int(static_cast<int64_t>(v));
          break;
        }
        case 'G': {  // BINFLOAT, big-endian
          uint64_t bits = 0;
          for (int i = 0; i < 8; ++i) bits = (bits << 8) | byte();
          auto v = make(Value::Kind::real);
          std::memcpy(&v->real, &bits, 8);
          stack_.push_back(v);
          break;
        }
        case 'X':
          push_text(Value::Kind::string, uint_le(4));
          break;
        case 0x8c:
          push_text(Value::Kind::string, uint_le(1));
          break;
        case 0x8d:
          push_text(Value::Kind::string, uint_le(8));
          break;
        case 'B':
          push_text(Value::Kind::bytes, uint_le(4));
          break;
        case 'C':
          push_text(Value::Kind::bytes, uint_le(1));
          break;
        case 0x8e:
          push_text(Value::Kind::bytes, uint_le(8));
          break;
        case ')':
          stack_.push_back(make(Value::Kind::tuple));
          break;
        case ']':
          stack_.push_back(make(Value::Kind::list));
          break;
        case '}':
          stack_.push_back(make(Value::Kind::dict));
          break;
        case 't': {
          auto v = make(Value::Kind::tuple);
          v->items = pop_to_mark();
          stack_.push_back(v);
          break;
        }
        case 0x85:
        case 0x86:
        case 0x87: {
          auto v = make(Value::Kind::tuple);
          v->items = pop_n(op - 0x85 + 1);
          stack_.push_back(v);
          break;
        }
        case 'q':
          memo_[uint_le(1)] = top();
          break;
        case 'r':
          memo_[uint_le(4)] = top();
          break;
        case 0x94:
          memo_[memo_.size()] = top();
          break;  // MEMOIZE
        case 'h':
          stack_.push_back(memo(uint_le(1)));
          break;
        case 'j':
          stack_.push_back(memo(uint_le(4)));
          break;
        case 'c': {
          const std::string module = line();
          push_global(module + "." + line());
          break;
        }
        case 0x93: {  // STACK_GLOBAL
          auto parts = pop_n(2);
          FT_CHECK(parts[0]->kind == Value::Kind::string && parts[1]->kind == Value::Kind::string,
                   kPlace, where_, ": STACK_GLOBAL needs two strings");
          push_global(parts[0]->text + "." + parts[1]->text);
          break;
        }
        case 'Q': {  // BINPERSID: ('storage', type, key, location, numel)
          auto pid = pop_n(1)[0];
          stack_.push_back(storage(pid));
          break;
        }
        case 'R': {
          auto parts = pop_n(2);
          stack_.push_back(reduce(parts[0], parts[1]));
          break;
        }
        case 'b': {  // BUILD: state on objects ft keeps (OrderedDict _metadata) is dropped
          pop_n(1);
          const auto kind = top()->kind;
          FT_CHECK(kind == Value::Kind::dict || kind == Value::Kind::tensor, kPlace, where_,
                   ": BUILD on an unsupported object");
          break;
        }
        case 's': {
          auto kv = pop_n(2);
          dict_top()->entries.emplace_back(kv[0], kv[1]);
          break;
        }
        case 'u': {
          auto items = pop_to_mark();
          FT_CHECK(items.size() % 2 == 0, kPlace, where_, ": SETITEMS with an odd count");
          auto d = dict_top();
          for (size_t i = 0; i < items.size(); i += 2)
            d->entries.emplace_back(items[i], items[i + 1]);
          break;
        }
        case 'a': {
          auto v = pop_n(1)[0];
          list_top()->items.push_back(v);
          break;
        }
        case 'e': {
          auto items = pop_to_mark();
          auto l = list_top();
          l->items.insert(l->items.end(), items.begin(), items.end());
          break;
        }
        default:
          throw Error(kPlace, where_ + ": unsupported pickle opcode 0x" + hex(op) + " at byte " +
                                  std::to_string(pos_ - 1) + " (not a PyTorch state dict?)");
      }
    }
  }

 private:
  Ref make(Value::Kind kind) {
    auto v = std::make_shared<Value>();
    v->kind = kind;
    created_.push_back(v);
    return v;
  }
  uint8_t byte() {
    FT_CHECK(pos_ < data_.size(), kPlace, where_, ": pickle ends early (truncated?)");
    return static_cast<uint8_t>(data_[pos_++]);
  }
  std::string bytes(uint64_t n) {
    FT_CHECK(n <= data_.size() - pos_, kPlace, where_, ": pickle ends early (truncated?)");
    std::string s = data_.substr(pos_, n);
    pos_ += n;
    return s;
  }
  uint64_t uint_le(size_t n) {
    uint64_t v = 0;
    for (size_t i = 0; i < n; ++i) v |= uint64_t{byte()} << (8 * i);
    return v;
  }
  std::string line() {
    const size_t end = data_.find('\n', pos_);
    FT_CHECK(end != std::string::npos, kPlace, where_, ": GLOBAL without a newline");
    std::string s = data_.substr(pos_, end - pos_);
    pos_ = end + 1;
    return s;
  }
  static std::string hex(uint8_t v) {
    const char* digits = "0123456789abcdef";
    return {digits[v >> 4], digits[v & 15]};
  }
  void push_int(int64_t v) {
    auto r = make(Value::Kind::integer);
    r->integer = v;
    stack_.push_back(r);
  }
  void push_text(Value::Kind kind, uint64_t n) {
    auto r = make(kind);
    r->text = bytes(n);
    stack_.push_back(r);
  }
  void push_global(const std::string& name) {
    // Note: the check is here, before anything could use the object: a pickle names
    // the function it wants called, and ft calls none outside this list.
    FT_CHECK(allowed_global(name), kPlace, where_, ": refuses global '", name,
             "' (only PyTorch tensor and storage types are loaded; the file may try to run code)");
    auto r = make(Value::Kind::global);
    r->text = name;
    stack_.push_back(r);
  }
  Ref top() {
    FT_CHECK(!stack_.empty(), kPlace, where_, ": pickle stack underflow");
    return stack_.back();
  }
  Ref memo(uint64_t key) {
    auto it = memo_.find(key);
    FT_CHECK(it != memo_.end(), kPlace, where_, ": memo key ", key, " is not set");
    return it->second;
  }
  std::vector<Ref> pop_n(size_t n) {
    FT_CHECK(stack_.size() >= n + (marks_.empty() ? 0 : marks_.back()), kPlace, where_,
             ": pickle stack underflow");
    std::vector<Ref> out(stack_.end() - static_cast<std::ptrdiff_t>(n), stack_.end());
    stack_.resize(stack_.size() - n);
    return out;
  }
  std::vector<Ref> pop_to_mark() {
    FT_CHECK(!marks_.empty(), kPlace, where_, ": pickle uses a MARK it never set");
    const size_t mark = marks_.back();
    marks_.pop_back();
    std::vector<Ref> out(stack_.begin() + static_cast<std::ptrdiff_t>(mark), stack_.end());
    stack_.resize(mark);
    return out;
  }
  Ref dict_top() {
    auto d = top();
    FT_CHECK(d->kind == Value::Kind::dict, kPlace, where_, ": SETITEM on something not a dict");
    return d;
  }
  Ref list_top() {
    auto l = top();
    FT_CHECK(l->kind == Value::Kind::list, kPlace, where_, ": APPEND on something not a list");
    return l;
  }
  int64_t as_int(const Ref& v, const char* what) const {
    FT_CHECK(v->kind == Value::Kind::integer, kPlace, where_, ": ", what, " is not an integer");
    return v->integer;
  }
  std::vector<int64_t> int_tuple(const Ref& v, const char* what) const {
    FT_CHECK(v->kind == Value::Kind::tuple, kPlace, where_, ": ", what, " is not a tuple");
    std::vector<int64_t> out;
    for (const auto& item : v->items) out.push_back(as_int(item, what));
    return out;
  }

  Ref storage(const Ref& pid) {
    FT_CHECK(pid->kind == Value::Kind::tuple && pid->items.size() == 5 &&
                 pid->items[0]->kind == Value::Kind::string && pid->items[0]->text == "storage" &&
                 pid->items[1]->kind == Value::Kind::global &&
                 pid->items[2]->kind == Value::Kind::string,
             kPlace, where_, ": persistent id is not ('storage', type, key, location, numel)");
    auto s = make(Value::Kind::storage);
    s->dtype = *storage_dtype(pid->items[1]->text);
    s->text = pid->items[2]->text;
    const int64_t numel = as_int(pid->items[4], "storage size");
    FT_CHECK(numel >= 0, kPlace, where_, ": storage '", s->text, "' has a negative size");
    s->numel = static_cast<uint64_t>(numel);
    return s;
  }

  Ref reduce(const Ref& callable, const Ref& args) {
    FT_CHECK(callable->kind == Value::Kind::global && args->kind == Value::Kind::tuple, kPlace,
             where_, ": REDUCE on something not a permitted global");
    const std::string& name = callable->text;
    const auto& a = args->items;
    if (name == "collections.OrderedDict") {
      FT_CHECK(a.empty(), kPlace, where_, ": OrderedDict with arguments");
      return make(Value::Kind::dict);
    }
    if (name == "torch._utils._rebuild_parameter") {
      FT_CHECK(!a.empty() && a[0]->kind == Value::Kind::tensor, kPlace, where_,
               ": _rebuild_parameter without a tensor");
      return a[0];
    }
    if (name == "torch._utils._rebuild_tensor_v2") {
      FT_CHECK(a.size() >= 4 && a[0]->kind == Value::Kind::storage, kPlace, where_,
               ": _rebuild_tensor_v2 needs (storage, offset, size, stride, ...)");
      auto t = make(Value::Kind::tensor);
      t->items = {a[0]};
      t->offset = as_int(a[1], "storage offset");
      t->shape = int_tuple(a[2], "tensor size");
      t->strides = int_tuple(a[3], "tensor stride");
      FT_CHECK(t->shape.size() == t->strides.size(), kPlace, where_,
               ": tensor size and stride differ in length");
      return t;
    }
    throw Error(kPlace, where_ + ": cannot call global '" + name + "'");
  }

  const std::string& data_;
  std::string where_;
  size_t pos_ = 0;
  std::vector<Ref> stack_;
  std::vector<size_t> marks_;
  std::map<uint64_t, Ref> memo_;
  std::vector<Ref> created_;
};

// A tensor is a view of its storage: every element it reads must lie inside the
// storage, and it may not hold more elements than the storage (a zero-stride view
// repeating a few elements could otherwise ask for gigabytes). All sums and products
// are checked, since the sizes and strides come from the file.
void check_view(const Value& view, uint64_t storage_numel, const std::string& where) {
  FT_CHECK(view.offset >= 0, kPlace, where, ": negative storage offset ", view.offset);
  int64_t last = view.offset;
  uint64_t numel = 1;
  bool too_many = false, too_far = false;
  for (size_t d = 0; d < view.shape.size(); ++d) {
    const int64_t size = view.shape[d], stride = view.strides[d];
    FT_CHECK(size >= 0 && stride >= 0, kPlace, where, ": negative size or stride");
    FT_CHECK(size < (int64_t{1} << 31), kPlace, where, ": size ", size, " of dimension ", d,
             " is more than MLX's 2^31 - 1");
    too_many = too_many || __builtin_mul_overflow(numel, static_cast<uint64_t>(size), &numel);
    int64_t reach = 0;
    if (size > 0)
      too_far = too_far || __builtin_mul_overflow(size - 1, stride, &reach) ||
                __builtin_add_overflow(last, reach, &last);
  }
  if (numel == 0 && !too_many) return;  // an empty view reads nothing
  FT_CHECK(!too_many && numel <= storage_numel, kPlace, where, ": view of shape ",
           shape_text(view.shape), " has more elements than its storage's ", storage_numel);
  FT_CHECK(!too_far && static_cast<uint64_t>(last) < storage_numel, kPlace, where,
           ": view of shape ", shape_text(view.shape), " reaches past the end of its storage of ",
           storage_numel, " elements");
}

}  // namespace

ParamMap load_torch_checkpoint(const fs::path& file, std::optional<mx::Dtype> dtype) {
  ZipReader zip(file);
  // torch.save names the archive's folder after the file; find it through data.pkl.
  std::string prefix;
  bool found = false;
  for (const auto& e : zip.entries()) {
    const std::string suffix = "data.pkl";
    if (e.name.size() >= suffix.size() &&
        e.name.compare(e.name.size() - suffix.size(), suffix.size(), suffix) == 0 &&
        std::count(e.name.begin(), e.name.end(), '/') == 1) {
      prefix = e.name.substr(0, e.name.size() - suffix.size());
      found = true;
      break;
    }
  }
  FT_CHECK(found, kPlace, file.string(),
           ": no data.pkl in the archive (not a torch.save checkpoint, or saved by an old "
           "PyTorch without the zip format)");
  const std::string pickle = zip.read(prefix + "data.pkl");
  Unpickler unpickler(pickle, file.string());  // owns the objects until the tensors are built
  Ref root = unpickler.run();
  FT_CHECK(root->kind == Value::Kind::dict, kPlace, file.string(),
           ": the pickle is not a state dict");

  // A storage stays cached only until the last tensor viewing it is built, so a cast
  // checkpoint never holds all its storages in the file's dtype at once.
  std::map<std::string, int> uses;
  for (const auto& [key, value] : root->entries) {
    FT_CHECK(key->kind == Value::Kind::string, kPlace, file.string(),
             ": a state dict key is not a string");
    FT_CHECK(value->kind == Value::Kind::tensor, kPlace, file.string(), ": tensor '", key->text,
             "': value is not a tensor");
    ++uses[value->items[0]->text];
  }
  std::map<std::string, mx::array> storages;  // key -> 1-D array of the storage's elements
  ParamMap out;
  for (const auto& [key, value] : root->entries) {
    const std::string where = file.string() + ": tensor '" + key->text + "'";
    const Value& s = *value->items[0];
    auto it = storages.find(s.text);
    if (it == storages.end()) {
      // MLX shapes are 32-bit.
      FT_CHECK(s.numel < (uint64_t{1} << 31), kPlace, where, ": storage '", s.text, "' has ",
               s.numel, " elements, more than MLX's 2^31 - 1");
      const std::string bytes = zip.read(prefix + "data/" + s.text);
      FT_CHECK(bytes.size() == s.numel * mx::size_of(s.dtype), kPlace, where, ": storage '", s.text,
               "' holds ", bytes.size(), " bytes but ", s.numel, " elements need ",
               s.numel * mx::size_of(s.dtype));
      it = storages
               .emplace(s.text, detail::array_from_bytes(bytes.data(), bytes.size(),
                                                         {static_cast<int32_t>(s.numel)}, s.dtype))
               .first;
    }
    check_view(*value, s.numel, where);
    mx::Shape shape(value->shape.begin(), value->shape.end());
    mx::Strides strides(value->strides.begin(), value->strides.end());
    mx::array view = mx::contiguous(
        mx::as_strided(it->second, shape, strides, static_cast<size_t>(value->offset)));
    out.set(key->text, detail::finish_tensor(view, dtype));
    if (--uses[s.text] == 0) storages.erase(s.text);
  }
  return out;
}

}  // namespace ft::io
