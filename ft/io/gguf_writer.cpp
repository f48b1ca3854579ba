#include "ft/io/gguf_writer.h"

#include <bit>
#include <cstring>
#include <fstream>
#include <system_error>

#include <mlx/ops.h>  // defines: contiguous

#include "ft/core/error.h"

namespace ft::io {
namespace {

static_assert(std::endian::native == std::endian::little, "GGUF is written little-endian");

constexpr const char* kPlace = "gguf";
constexpr uint32_t kVersion = 3;
constexpr uint64_t kDefaultAlignment = 32;
constexpr size_t kMaxNameBytes = 63;  // GGUF's tensor names hold at most 64 bytes with a NUL

template <typename T>
void put(std::string& out, T value) {
  char bytes[sizeof(T)];
  std::memcpy(bytes, &value, sizeof(T));
  out.append(bytes, sizeof(T));
}

void put_string(std::string& out, const std::string& s) {
  put<uint64_t>(out, s.size());
  out += s;
}

void put_value(std::string& out, const GgufValue& v, bool with_type) {
  if (with_type) put<uint32_t>(out, static_cast<uint32_t>(v.type()));
  std::visit(
      [&](const auto& x) {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, std::string>) {
          put_string(out, x);
        } else if constexpr (std::is_same_v<T, GgufArray>) {
          put<uint32_t>(out, static_cast<uint32_t>(x.element_type));
          put<uint64_t>(out, x.items.size());
          for (const auto& item : x.items) put_value(out, item, false);
        } else if constexpr (std::is_same_v<T, bool>) {
          out.push_back(x ? 1 : 0);
        } else {
          put<T>(out, x);
        }
      },
      v.value);
}

// An array's items must all be of its element type, at every depth, and not empty (the
// gguf package refuses empty arrays too).
void check_value(const std::string& key, const GgufValue& v) {
  if (v.type() != GgufValueType::Array) return;
  const GgufArray& a = v.as_array();
  FT_CHECK(!a.items.empty(), kPlace, "metadata '", key, "': an array needs at least one item");
  for (const auto& item : a.items) {
    FT_CHECK(item.type() == a.element_type, kPlace, "metadata '", key, "': an array of ",
             gguf_value_type_name(a.element_type), " holds a ", gguf_value_type_name(item.type()));
    check_value(key, item);
  }
}

uint64_t padded(uint64_t n, uint64_t alignment) {
  return (n + alignment - 1) / alignment * alignment;
}

}  // namespace

void GgufWriter::add(const std::string& key, GgufValue value) {
  FT_CHECK(!key.empty(), kPlace, "a metadata key cannot be empty");
  for (const auto& [k, v] : metadata_)
    FT_CHECK(k != key, kPlace, "metadata key '", key, "' given twice");
  check_value(key, value);
  if (key == "general.alignment") {
    FT_CHECK(value.type() == GgufValueType::UInt32, kPlace,
             "general.alignment must be a uint32, got ", gguf_value_type_name(value.type()));
    const uint32_t a = std::get<uint32_t>(value.value);
    FT_CHECK(a > 0 && (a & (a - 1)) == 0, kPlace, "general.alignment must be a power of two, got ",
             a);
  }
  metadata_.emplace_back(key, std::move(value));
}

void GgufWriter::add_tensor(const std::string& name, const mx::Shape& shape, ggml::Type type,
                            std::vector<uint8_t> bytes) {
  FT_CHECK(!name.empty() && name.size() <= kMaxNameBytes, kPlace, "tensor name '", name,
           "' must have 1 to ", kMaxNameBytes, " bytes");
  for (const auto& t : tensors_)
    FT_CHECK(t.name != name, kPlace, "tensor '", name, "' given twice");
  FT_CHECK(!shape.empty() && shape.size() <= 4, kPlace, "tensor '", name,
           "' must have 1 to 4 dimensions, got ", shape.size());
  const auto info = ggml::type_info(static_cast<uint32_t>(type));
  FT_CHECK(info.has_value(), kPlace, "tensor '", name, "': unknown type ",
           static_cast<uint32_t>(type));
  uint64_t count = 1;
  for (int d : shape) {
    FT_CHECK(d > 0, kPlace, "tensor '", name, "' has a dimension of ", d);
    count *= uint64_t(d);
  }
  FT_CHECK(shape.back() % info->block == 0, kPlace, "tensor '", name, "': rows of ", shape.back(),
           " values are not whole ", info->name, " blocks of ", info->block);
  const uint64_t expected = count / uint64_t(info->block) * uint64_t(info->bytes);
  FT_CHECK(bytes.size() == expected, kPlace, "tensor '", name, "': ", bytes.size(), " bytes for ",
           count, " ", info->name, " values, which take ", expected);
  tensors_.push_back({name, shape, type, std::move(bytes)});
}

void GgufWriter::add_tensor(const std::string& name, const mx::array& values) {
  ggml::Type type;
  if (values.dtype() == mx::float32) {
    type = ggml::Type::F32;
  } else if (values.dtype() == mx::float16) {
    type = ggml::Type::F16;
  } else if (values.dtype() == mx::bfloat16) {
    type = ggml::Type::BF16;
  } else {
    throw Error(kPlace, "tensor '" + name +
                            "': only float32, float16 and bfloat16 arrays are "
                            "written as they are");
  }
  mx::array c = mx::contiguous(values);
  c.eval();
  const auto* p = c.data<uint8_t>();
  add_tensor(name, values.shape(), type, std::vector<uint8_t>(p, p + c.nbytes()));
}

uint64_t GgufWriter::alignment() const {
  for (const auto& [k, v] : metadata_)
    if (k == "general.alignment") return std::get<uint32_t>(v.value);
  return kDefaultAlignment;
}

void GgufWriter::write(const std::filesystem::path& file) const {
  const uint64_t align = alignment();
  std::string header;
  header += "GGUF";
  put<uint32_t>(header, kVersion);
  put<uint64_t>(header, tensors_.size());
  put<uint64_t>(header, metadata_.size());
  for (const auto& [key, value] : metadata_) {
    put_string(header, key);
    put_value(header, value, true);
  }
  uint64_t offset = 0;
  for (const auto& t : tensors_) {
    put_string(header, t.name);
    put<uint32_t>(header, static_cast<uint32_t>(t.shape.size()));
    for (auto it = t.shape.rbegin(); it != t.shape.rend(); ++it) put<uint64_t>(header, *it);
    put<uint32_t>(header, static_cast<uint32_t>(t.type));
    put<uint64_t>(header, offset);
    offset += padded(t.bytes.size(), align);
  }

  std::filesystem::path temp = file;
  temp += ".partial";
  {
    std::ofstream out(temp, std::ios::binary | std::ios::trunc);
    FT_CHECK(out.good(), kPlace, file.string(), ": cannot open ", temp.string(), " for writing");
    const std::string zeros(align, '\0');
    out.write(header.data(), std::streamsize(header.size()));
    out.write(zeros.data(), std::streamsize(padded(header.size(), align) - header.size()));
    for (const auto& t : tensors_) {
      out.write(reinterpret_cast<const char*>(t.bytes.data()), std::streamsize(t.bytes.size()));
      out.write(zeros.data(), std::streamsize(padded(t.bytes.size(), align) - t.bytes.size()));
    }
    out.flush();
    if (!out.good()) {
      std::error_code ec;
      std::filesystem::remove(temp, ec);
      throw Error(kPlace, file.string() + ": writing failed (disk full?)");
    }
  }
  std::error_code ec;
  std::filesystem::rename(temp, file, ec);
  if (ec) {
    std::filesystem::remove(temp, ec);
    throw Error(kPlace, file.string() + ": cannot move the written file into place");
  }
}

}  // namespace ft::io
