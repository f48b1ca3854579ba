#include "ft/io/gguf_file.h"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <iterator>
#include <unordered_set>

#include "ft/core/error.h"
#include "ft/io/tensor_bytes.h"

namespace ft::io {

namespace fs = std::filesystem;

namespace {

constexpr const char* kPlace = "gguf";
constexpr uint64_t kMaxKeyBytes = 65535;  // GGUF's limit for a key
constexpr uint64_t kMaxNameBytes = 64;    // GGUF's limit for a tensor name
constexpr uint32_t kMaxDims = 4;
constexpr int kMaxArrayDepth = 3;  // an array of arrays of arrays; GGUF writers use 1
// The fewest bytes a metadata pair and a tensor info can take: a 1-byte key, its type
// and a 1-byte value; a 1-byte name, n_dims, one size, the type and the offset.
constexpr uint64_t kMinPairBytes = 8 + 1 + 4 + 1;
constexpr uint64_t kMinTensorInfoBytes = 8 + 1 + 4 + 8 + 4 + 8;

std::string in_quotes(std::string_view name) {
  std::string out(1, '\'');
  out.append(name);
  out.push_back('\'');
  return out;
}

// The bytes a value of this type takes at least, so a count can be checked against the
// bytes left before anything is allocated for it.
uint64_t min_value_bytes(GgufValueType type) {
  switch (type) {
    case GgufValueType::UInt8:
    case GgufValueType::Int8:
    case GgufValueType::Bool:
      return 1;
    case GgufValueType::UInt16:
    case GgufValueType::Int16:
      return 2;
    case GgufValueType::UInt32:
    case GgufValueType::Int32:
    case GgufValueType::Float32:
      return 4;
    case GgufValueType::String:  // the length
    case GgufValueType::UInt64:
    case GgufValueType::Int64:
    case GgufValueType::Float64:
      return 8;
    case GgufValueType::Array:  // element type and count
      return 12;
  }
  return 1;
}

template <size_t I, typename T>
GgufValue make_value(T v) {
  return GgufValue{GgufValue::Storage(std::in_place_index<I>, std::move(v))};
}

// Reads the header field by field; every read is checked against the bytes left in the
// file first, and every error names the file and the byte where the fault was found.
class HeaderReader {
 public:
  HeaderReader(const fs::path& file, uint64_t size)
      : file_(file), size_(size), in_(file, std::ios::binary) {
    FT_CHECK(in_, kPlace, file_.string(), ": cannot open");
  }

  uint64_t position() const { return pos_; }
  uint64_t left() const { return size_ - pos_; }

  template <typename... Args>
  void check(bool cond, uint64_t at, const Args&... args) const {
    if (!cond)
      throw Error(kPlace, ft::detail::concat(file_.string(), ": ", args..., ", at byte ", at));
  }

  void read(void* out, uint64_t n, std::string_view what) {
    check(n <= left(), pos_, what, " needs ", n, " bytes but the file has ", left(),
          " left (truncated?)");
    in_.read(static_cast<char*>(out), static_cast<std::streamsize>(n));
    check(static_cast<bool>(in_), pos_, "cannot read ", what);
    pos_ += n;
  }

  // A little-endian scalar.
  template <typename T>
  T scalar(std::string_view what) {
    unsigned char bytes[sizeof(T)];
    read(bytes, sizeof(T), what);
    uint64_t bits = 0;
    for (size_t i = sizeof(T); i-- > 0;) bits = (bits << 8) | bytes[i];
    T out;
    if constexpr (sizeof(T) == 8) {
      std::memcpy(&out, &bits, sizeof(T));
    } else {
      const auto narrow = static_cast<std::conditional_t<
          sizeof(T) == 4, uint32_t, std::conditional_t<sizeof(T) == 2, uint16_t, uint8_t>>>(bits);
      std::memcpy(&out, &narrow, sizeof(T));
    }
    return out;
  }

  // A GGUF string: a u64 length, then that many bytes.
  std::string string(uint64_t max_bytes, std::string_view what) {
    const uint64_t at = pos_;
    const uint64_t length = scalar<uint64_t>(what);
    check(length <= left(), at, what, " of ", length, " bytes does not fit in the ", left(),
          " bytes left (truncated?)");
    check(length <= max_bytes, at, what, " of ", length, " bytes is longer than the ", max_bytes,
          " allowed");
    std::string out(length, '\0');
    read(out.data(), length, what);
    return out;
  }

 private:
  const fs::path& file_;
  uint64_t size_;
  std::ifstream in_;
  uint64_t pos_ = 0;
};

GgufValue read_value(HeaderReader& in, GgufValueType type, int depth, const std::string& key) {
  const std::string what = "metadata " + in_quotes(key);
  switch (type) {
    case GgufValueType::UInt8:
      return make_value<0>(in.scalar<uint8_t>(what));
    case GgufValueType::Int8:
      return make_value<1>(in.scalar<int8_t>(what));
    case GgufValueType::UInt16:
      return make_value<2>(in.scalar<uint16_t>(what));
    case GgufValueType::Int16:
      return make_value<3>(in.scalar<int16_t>(what));
    case GgufValueType::UInt32:
      return make_value<4>(in.scalar<uint32_t>(what));
    case GgufValueType::Int32:
      return make_value<5>(in.scalar<int32_t>(what));
    case GgufValueType::Float32:
      return make_value<6>(in.scalar<float>(what));
    case GgufValueType::Bool: {
      const uint64_t at = in.position();
      const uint8_t b = in.scalar<uint8_t>(what);
      in.check(b <= 1, at, what, ": bool value ", int(b), " is neither 0 nor 1");
      return make_value<7>(b == 1);
    }
    case GgufValueType::String:
      return make_value<8>(in.string(in.left(), what));
    case GgufValueType::Array: {
      const uint64_t at = in.position();
      in.check(depth < kMaxArrayDepth, at, what, ": arrays nested deeper than ", kMaxArrayDepth);
      const uint32_t element = in.scalar<uint32_t>(what + "'s element type");
      in.check(element <= uint32_t(GgufValueType::Float64), at, what,
               ": array of unknown value type ", element);
      GgufArray array;
      array.element_type = static_cast<GgufValueType>(element);
      const uint64_t count = in.scalar<uint64_t>(what + "'s length");
      in.check(count <= in.left() / min_value_bytes(array.element_type), at, what, ": array of ",
               count, " ", gguf_value_type_name(array.element_type), " values cannot fit in the ",
               in.left(), " bytes left");
      array.items.reserve(count);
      for (uint64_t i = 0; i < count; ++i)
        array.items.push_back(read_value(in, array.element_type, depth + 1, key));
      return make_value<9>(std::move(array));
    }
    case GgufValueType::UInt64:
      return make_value<10>(in.scalar<uint64_t>(what));
    case GgufValueType::Int64:
      return make_value<11>(in.scalar<int64_t>(what));
    case GgufValueType::Float64:
      return make_value<12>(in.scalar<double>(what));
  }
  in.check(false, in.position(), what, ": unknown value type ", uint32_t(type));
  return {};
}

std::string dims_text(const std::vector<uint64_t>& dims) {
  std::string out = "[";
  for (size_t i = 0; i < dims.size(); ++i) out += (i ? ", " : "") + std::to_string(dims[i]);
  return out + "]";
}

// A tensor info as read, before its place is checked against the data section.
struct RawTensor {
  GgufTensorInfo info;
  uint64_t relative_offset = 0;
  uint64_t at = 0;  // where its info starts in the file
};

RawTensor read_tensor_info(HeaderReader& in) {
  RawTensor t;
  t.at = in.position();
  t.info.name = in.string(kMaxNameBytes, "tensor name");
  in.check(!t.info.name.empty(), t.at, "a tensor has an empty name");
  const std::string what = "tensor " + in_quotes(t.info.name);
  const uint32_t n_dims = in.scalar<uint32_t>(what + "'s n_dims");
  in.check(n_dims >= 1 && n_dims <= kMaxDims, t.at, what, " has ", n_dims,
           " dimensions; GGUF allows 1 to ", kMaxDims);
  std::vector<uint64_t> dims(n_dims);
  for (auto& d : dims) d = in.scalar<uint64_t>(what + "'s size");
  for (auto d : dims)
    in.check(d < (uint64_t{1} << 31), t.at, what, ": sizes ", dims_text(dims),
             " hold one of 2^31 or more");
  const uint32_t type = in.scalar<uint32_t>(what + "'s type");
  const auto block = ggml::type_info(type);
  in.check(block.has_value(), t.at, what, " has ggml type ", ggml::type_name(type), " (", type,
           "), which ft does not read");
  in.check(dims[0] % uint64_t(block->block) == 0, t.at, what, ": row length ", dims[0],
           " is not a multiple of ", ggml::type_name(type), "'s block of ", uint64_t(block->block),
           " values");
  // The byte count without overflow: a wrapped product could describe a tensor larger
  // than the file as one that fits.
  uint64_t nbytes = dims[0] / uint64_t(block->block) * uint64_t(block->bytes);
  bool too_large = false;
  for (size_t i = 1; i < dims.size(); ++i)
    too_large = too_large || __builtin_mul_overflow(nbytes, dims[i], &nbytes);
  in.check(!too_large, t.at, what, ": sizes ", dims_text(dims), " of ", ggml::type_name(type),
           " need more than 2^64 bytes");
  t.relative_offset = in.scalar<uint64_t>(what + "'s offset");
  t.info.type = static_cast<ggml::Type>(type);
  t.info.nbytes = nbytes;
  for (size_t i = dims.size(); i-- > 0;) t.info.shape.push_back(static_cast<int32_t>(dims[i]));
  return t;
}

// Two tensors may not share bytes: a writer that did so is broken, and a reader that
// accepted it would load one tensor's data as another's.
void check_no_overlaps(const fs::path& file, std::vector<GgufTensorInfo> tensors) {
  std::sort(tensors.begin(), tensors.end(), [](const auto& a, const auto& b) {
    return a.offset != b.offset ? a.offset < b.offset : a.nbytes < b.nbytes;
  });
  const GgufTensorInfo* previous = nullptr;
  for (const auto& t : tensors) {
    if (t.nbytes == 0) continue;  // an empty tensor holds no bytes
    FT_CHECK(!previous || previous->offset + previous->nbytes <= t.offset, kPlace, file.string(),
             ": tensors ", in_quotes(previous->name), " (bytes ", previous->offset, "..",
             previous->offset + previous->nbytes, ") and ", in_quotes(t.name), " (bytes ", t.offset,
             "..", t.offset + t.nbytes, ") overlap");
    previous = &t;
  }
}

std::optional<mx::Dtype> dtype_of(ggml::Type type) {
  switch (type) {
    case ggml::Type::F32:
      return mx::float32;
    case ggml::Type::F16:
      return mx::float16;
    case ggml::Type::BF16:
      return mx::bfloat16;
    case ggml::Type::F64:
      return mx::float64;
    case ggml::Type::I8:
      return mx::int8;
    case ggml::Type::I16:
      return mx::int16;
    case ggml::Type::I32:
      return mx::int32;
    case ggml::Type::I64:
      return mx::int64;
    default:
      return std::nullopt;
  }
}

}  // namespace

std::string gguf_value_type_name(GgufValueType type) {
  static const char* const names[] = {"uint8",  "int8",    "uint16", "int16",  "uint32",
                                      "int32",  "float32", "bool",   "string", "array",
                                      "uint64", "int64",   "float64"};
  const auto i = static_cast<uint32_t>(type);
  return i < std::size(names) ? names[i] : "type " + std::to_string(i);
}

namespace {

[[noreturn]] void wrong_type(GgufValueType type, const char* wanted) {
  throw Error(kPlace, "a value of type " + gguf_value_type_name(type) + " is not " + wanted);
}

}  // namespace

int64_t GgufValue::as_int() const {
  return std::visit(
      [&](const auto& v) -> int64_t {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
          if constexpr (std::is_same_v<T, uint64_t>)
            FT_CHECK(v <= uint64_t(INT64_MAX), kPlace, "uint64 value ", v,
                     " does not fit an int64");
          return static_cast<int64_t>(v);
        } else {
          wrong_type(type(), "an integer");
        }
      },
      value);
}

double GgufValue::as_float() const {
  if (const auto* f = std::get_if<float>(&value)) return *f;
  if (const auto* d = std::get_if<double>(&value)) return *d;
  wrong_type(type(), "a float32 or float64");
}

bool GgufValue::as_bool() const {
  if (const auto* b = std::get_if<bool>(&value)) return *b;
  wrong_type(type(), "a bool");
}

const std::string& GgufValue::as_string() const {
  if (const auto* s = std::get_if<std::string>(&value)) return *s;
  wrong_type(type(), "a string");
}

const GgufArray& GgufValue::as_array() const {
  if (const auto* a = std::get_if<GgufArray>(&value)) return *a;
  wrong_type(type(), "an array");
}

const GgufValue* GgufFile::find(std::string_view key) const {
  for (const auto& [k, v] : metadata)
    if (k == key) return &v;
  return nullptr;
}

const GgufValue& GgufFile::at(std::string_view key) const {
  const GgufValue* v = find(key);
  FT_CHECK(v, kPlace, path.string(), ": metadata ", in_quotes(key), " is missing");
  return *v;
}

const GgufTensorInfo* GgufFile::find_tensor(std::string_view name) const {
  for (const auto& t : tensors)
    if (t.name == name) return &t;
  return nullptr;
}

GgufFile read_gguf_file(const fs::path& file) {
  std::error_code ec;
  FT_CHECK(fs::is_regular_file(file, ec), kPlace, file.string(), ": no such file");
  const uint64_t file_size = fs::file_size(file, ec);
  FT_CHECK(!ec, kPlace, file.string(), ": cannot read its size: ", ec.message());
  HeaderReader in(file, file_size);
  GgufFile out;
  out.path = file;

  char magic[4];
  in.read(magic, 4, "the magic \"GGUF\"");
  in.check(std::memcmp(magic, "GGUF", 4) == 0, 0,
           "not a GGUF file (it does not start with "
           "\"GGUF\")");
  out.version = in.scalar<uint32_t>("the version");
  const uint32_t swapped = __builtin_bswap32(out.version);
  in.check(!(swapped == 2 || swapped == 3), 4, "a big-endian GGUF file, which ft does not read");
  in.check(out.version == 2 || out.version == 3, 4, "GGUF version ", out.version,
           " is not supported (2 and 3 are)");
  const uint64_t tensor_count = in.scalar<uint64_t>("the tensor count");
  const uint64_t metadata_count = in.scalar<uint64_t>("the metadata count");
  in.check(tensor_count <= in.left() / kMinTensorInfoBytes, 8, "a tensor count of ", tensor_count,
           " cannot fit in the file's ", in.left(), " bytes left");
  in.check(metadata_count <= in.left() / kMinPairBytes, 16, "a metadata count of ", metadata_count,
           " cannot fit in the file's ", in.left(), " bytes left");

  std::unordered_set<std::string> keys;
  out.metadata.reserve(metadata_count);
  for (uint64_t i = 0; i < metadata_count; ++i) {
    const uint64_t at = in.position();
    std::string key = in.string(kMaxKeyBytes, "metadata key");
    in.check(!key.empty(), at, "a metadata key is empty");
    in.check(!keys.contains(key), at, "metadata key ", in_quotes(key), " appears twice");
    keys.insert(key);
    const uint32_t type = in.scalar<uint32_t>("metadata " + in_quotes(key) + "'s type");
    in.check(type <= uint32_t(GgufValueType::Float64), at, "metadata ", in_quotes(key),
             " has unknown value type ", type);
    GgufValue value = read_value(in, static_cast<GgufValueType>(type), 0, key);
    if (key == "general.alignment") {
      in.check(value.type() == GgufValueType::UInt32, at, "general.alignment is a ",
               gguf_value_type_name(value.type()), ", not a uint32");
      const uint32_t alignment = std::get<uint32_t>(value.value);
      in.check(alignment != 0 && (alignment & (alignment - 1)) == 0, at, "general.alignment ",
               alignment, " is not a power of two");
      out.alignment = alignment;
    }
    out.metadata.emplace_back(std::move(key), std::move(value));
  }

  in.check(tensor_count <= in.left() / kMinTensorInfoBytes, in.position(), "a tensor count of ",
           tensor_count, " cannot fit in the ", in.left(), " bytes left after the metadata");
  std::vector<RawTensor> raw;
  raw.reserve(tensor_count);
  std::unordered_set<std::string> names;
  for (uint64_t i = 0; i < tensor_count; ++i) {
    raw.push_back(read_tensor_info(in));
    in.check(names.insert(raw.back().info.name).second, raw.back().at, "tensor ",
             in_quotes(raw.back().info.name), " appears twice");
  }

  // The data section starts at the header's end rounded up to the alignment (a power of
  // two, so no overflow below 2^64 - alignment, which a real file's size is).
  const uint64_t header_end = in.position();
  out.data_offset = (header_end + out.alignment - 1) & ~(out.alignment - 1);
  in.check(raw.empty() || out.data_offset <= file_size, header_end,
           "the data section starts at byte ", out.data_offset, " (the header's end aligned to ",
           out.alignment, ") but the file has ", file_size);
  for (auto& t : raw) {
    const std::string what = "tensor " + in_quotes(t.info.name);
    in.check(t.relative_offset % out.alignment == 0, t.at, what, ": offset ", t.relative_offset,
             " is not a multiple of the alignment ", out.alignment);
    const uint64_t room = file_size - out.data_offset;
    in.check(t.relative_offset <= room && t.info.nbytes <= room - t.relative_offset, t.at, what,
             ": its ", t.info.nbytes, " bytes at offset ", t.relative_offset,
             " of the data section (byte ", out.data_offset, ") end past the file's ", file_size,
             " bytes (truncated?)");
    t.info.offset = out.data_offset + t.relative_offset;
    out.tensors.push_back(std::move(t.info));
  }
  check_no_overlaps(file, out.tensors);
  return out;
}

std::vector<char> read_gguf_tensor_bytes(const GgufFile& gguf, const GgufTensorInfo& tensor) {
  std::ifstream in(gguf.path, std::ios::binary);
  FT_CHECK(in, kPlace, gguf.path.string(), ": cannot open");
  std::vector<char> bytes(tensor.nbytes);
  in.seekg(static_cast<std::streamoff>(tensor.offset));
  in.read(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  FT_CHECK(in, kPlace, gguf.path.string(), ": tensor ", in_quotes(tensor.name),
           ": cannot read bytes ", tensor.offset, "..", tensor.offset + tensor.nbytes,
           " (has the file changed?)");
  return bytes;
}

bool load_gguf_tensor_supported(ggml::Type type) {
  return dtype_of(type).has_value();
}

mx::array load_gguf_tensor(const GgufFile& gguf, const GgufTensorInfo& tensor) {
  const auto type = static_cast<uint32_t>(tensor.type);
  const auto dtype = dtype_of(tensor.type);
  FT_CHECK(dtype.has_value(), kPlace, gguf.path.string(), ": tensor ", in_quotes(tensor.name),
           " is ", ggml::type_name(type), " (", type,
           "), a quantized type ft does not load yet (F32, F16, BF16, F64 and I8..I64 load)");
  const std::vector<char> bytes = read_gguf_tensor_bytes(gguf, tensor);
  return detail::array_from_bytes(bytes.data(), bytes.size(), tensor.shape, *dtype);
}

}  // namespace ft::io
