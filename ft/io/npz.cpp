#include "ft/io/npz.h"

#include <algorithm>
#include <cctype>

#include <mlx/ops.h>  // defines: transpose, reshape

#include "ft/core/error.h"
#include "ft/io/tensor_bytes.h"
#include "ft/io/zip_reader.h"

namespace ft::io {

namespace {

constexpr const char* kPlace = "npz";

std::optional<mx::Dtype> npy_dtype(const std::string& descr) {
  // '<' little-endian, '|' byte-sized (no order), '=' native (little on MLX's platforms).
  if (descr.size() < 3 || (descr[0] != '<' && descr[0] != '|' && descr[0] != '='))
    return std::nullopt;
  const std::string t = descr.substr(1);
  if (t == "f4") return mx::float32;
  if (t == "f2") return mx::float16;
  if (t == "f8") return mx::float64;
  if (t == "i8") return mx::int64;
  if (t == "i4") return mx::int32;
  if (t == "i2") return mx::int16;
  if (t == "i1") return mx::int8;
  if (t == "u8") return mx::uint64;
  if (t == "u4") return mx::uint32;
  if (t == "u2") return mx::uint16;
  if (t == "u1") return mx::uint8;
  if (t == "b1") return mx::bool_;
  return std::nullopt;
}

// The .npy header is a Python dict literal, e.g.
// {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }
// Read by hand rather than with std::regex, whose matcher recurses once per character
// and can overflow the stack on a long header.
std::string field(const std::string& header, const std::string& key, const std::string& where) {
  const std::string quoted_key = "'" + key + "'";
  auto is_space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; };
  for (size_t at = header.find(quoted_key); at != std::string::npos;
       at = header.find(quoted_key, at + 1)) {
    size_t i = at + quoted_key.size();
    while (i < header.size() && is_space(header[i])) ++i;
    if (i >= header.size() || header[i] != ':') continue;
    ++i;
    while (i < header.size() && is_space(header[i])) ++i;
    if (header.compare(i, 4, "True") == 0) return "True";
    if (header.compare(i, 5, "False") == 0) return "False";
    const char close = i < header.size() && header[i] == '\''  ? '\''
                       : i < header.size() && header[i] == '(' ? ')'
                                                               : '\0';
    if (close == '\0') continue;
    const size_t end = header.find(close, i + 1);
    if (end == std::string::npos) continue;
    return header.substr(i, end + 1 - i);
  }
  throw Error(kPlace, where + ": .npy header has no '" + key + "'");
}

mx::array parse_npy(const std::string& bytes, const std::string& where) {
  FT_CHECK(bytes.size() >= 10 && bytes.compare(0, 6, "\x93NUMPY") == 0, kPlace, where,
           ": not a .npy file");
  const int major = static_cast<unsigned char>(bytes[6]);
  size_t header_len = 0, header_start = 0;
  if (major == 1) {
    header_len = static_cast<unsigned char>(bytes[8]) | (static_cast<unsigned char>(bytes[9]) << 8);
    header_start = 10;
  } else {
    FT_CHECK(bytes.size() >= 12, kPlace, where, ": truncated .npy header");
    for (int i = 3; i >= 0; --i)
      header_len = (header_len << 8) | static_cast<unsigned char>(bytes[8 + i]);
    header_start = 12;
  }
  FT_CHECK(header_start + header_len <= bytes.size(), kPlace, where, ": truncated .npy header");
  const std::string header = bytes.substr(header_start, header_len);
  const std::string descr = field(header, "descr", where);
  auto dtype = npy_dtype(descr.substr(1, descr.size() - 2));
  FT_CHECK(dtype.has_value(), kPlace, where, ": unsupported dtype ", descr.substr(0, 100));
  const bool fortran = field(header, "fortran_order", where) == "True";
  mx::Shape shape;
  const std::string dims = field(header, "shape", where);
  // Each size below 2^31 (MLX's shapes), and the byte count without overflow.
  size_t nbytes = mx::size_of(*dtype);
  bool too_large = false;
  for (size_t i = 0; i < dims.size();) {
    if (!std::isdigit(static_cast<unsigned char>(dims[i]))) {
      ++i;
      continue;
    }
    int64_t size = 0;
    for (; i < dims.size() && std::isdigit(static_cast<unsigned char>(dims[i])); ++i) {
      size = size * 10 + (dims[i] - '0');
      FT_CHECK(size < (int64_t{1} << 31), kPlace, where, ": shape ", dims.substr(0, 100),
               " has a size of 2^31 or more");
    }
    shape.push_back(static_cast<int32_t>(size));
    too_large = too_large || __builtin_mul_overflow(nbytes, static_cast<size_t>(size), &nbytes);
  }
  const size_t data_start = header_start + header_len;
  FT_CHECK(!too_large, kPlace, where, ": shape ", dims.substr(0, 100),
           " needs more than 2^64 bytes");
  FT_CHECK(bytes.size() - data_start == nbytes, kPlace, where, ": holds ",
           bytes.size() - data_start, " data bytes but shape ", dims.substr(0, 100), " of ", descr,
           " needs ", nbytes);
  if (!fortran) return detail::array_from_bytes(bytes.data() + data_start, nbytes, shape, *dtype);
  // Column-major data is the row-major array of the reversed shape, transposed.
  mx::Shape reversed(shape.rbegin(), shape.rend());
  return mx::transpose(
      detail::array_from_bytes(bytes.data() + data_start, nbytes, reversed, *dtype));
}

}  // namespace

ParamMap load_npz(const std::filesystem::path& file, std::optional<mx::Dtype> dtype) {
  ZipReader zip(file);
  std::vector<const ZipReader::Entry*> members;
  for (const auto& e : zip.entries()) {
    FT_CHECK(e.name.size() > 4 && e.name.compare(e.name.size() - 4, 4, ".npy") == 0, kPlace,
             file.string(), ": member '", e.name, "' is not a .npy file");
    members.push_back(&e);
  }
  std::sort(members.begin(), members.end(),
            [](const auto* a, const auto* b) { return natural_less(a->name, b->name); });
  ParamMap out;
  for (const auto* e : members) {
    const std::string name = e->name.substr(0, e->name.size() - 4);
    const std::string where = file.string() + ": array '" + name + "'";
    out.set(name, detail::finish_tensor(mx::contiguous(parse_npy(zip.read(*e), where)), dtype));
  }
  return out;
}

}  // namespace ft::io
