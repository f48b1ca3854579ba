#include "ft/io/tensor_bytes.h"

#include <cstring>
#include <memory>

#include <mlx/ops.h>         // defines: astype
#include <mlx/transforms.h>  // defines: eval

#include "ft/core/error.h"

namespace ft::io::detail {

namespace {

// Copies the bytes into a buffer aligned for T first: file offsets carry no alignment.
template <typename T>
mx::array typed_copy(const void* data, size_t nbytes, const mx::Shape& shape, mx::Dtype dtype) {
  std::unique_ptr<T[]> aligned(new T[nbytes / sizeof(T) + 1]);
  if (nbytes > 0) std::memcpy(aligned.get(), data, nbytes);
  return mx::array(aligned.get(), shape, dtype);
}

}  // namespace

mx::array array_from_bytes(const void* data, size_t nbytes, const mx::Shape& shape,
                           mx::Dtype dtype) {
  size_t count = 1;
  for (auto d : shape) count *= static_cast<size_t>(d);
  FT_ASSERT(count * mx::size_of(dtype) == nbytes);
  switch (dtype.val()) {
    case mx::Dtype::Val::bool_:
      return typed_copy<bool>(data, nbytes, shape, dtype);
    case mx::Dtype::Val::uint8:
      return typed_copy<uint8_t>(data, nbytes, shape, dtype);
    case mx::Dtype::Val::uint16:
      return typed_copy<uint16_t>(data, nbytes, shape, dtype);
    case mx::Dtype::Val::uint32:
      return typed_copy<uint32_t>(data, nbytes, shape, dtype);
    case mx::Dtype::Val::uint64:
      return typed_copy<uint64_t>(data, nbytes, shape, dtype);
    case mx::Dtype::Val::int8:
      return typed_copy<int8_t>(data, nbytes, shape, dtype);
    case mx::Dtype::Val::int16:
      return typed_copy<int16_t>(data, nbytes, shape, dtype);
    case mx::Dtype::Val::int32:
      return typed_copy<int32_t>(data, nbytes, shape, dtype);
    case mx::Dtype::Val::int64:
      return typed_copy<int64_t>(data, nbytes, shape, dtype);
    case mx::Dtype::Val::float16:
      return typed_copy<mx::float16_t>(data, nbytes, shape, dtype);
    case mx::Dtype::Val::bfloat16:
      return typed_copy<mx::bfloat16_t>(data, nbytes, shape, dtype);
    case mx::Dtype::Val::float32:
      return typed_copy<float>(data, nbytes, shape, dtype);
    case mx::Dtype::Val::float64:
      return typed_copy<double>(data, nbytes, shape, dtype);
    default:
      break;
  }
  FT_ASSERT(false && "unsupported dtype");
  return mx::array(0);
}

mx::array finish_tensor(const mx::array& a, std::optional<mx::Dtype> dtype) {
  mx::array out = a;
  if (dtype && mx::issubdtype(a.dtype(), mx::floating) && a.dtype() != *dtype)
    out = mx::astype(a, *dtype);
  mx::eval(out);
  return out;
}

std::optional<mx::Dtype> dtype_from_safetensors_name(const std::string& name) {
  if (name == "F32") return mx::float32;
  if (name == "F16") return mx::float16;
  if (name == "BF16") return mx::bfloat16;
  if (name == "F64") return mx::float64;
  if (name == "I64") return mx::int64;
  if (name == "I32") return mx::int32;
  if (name == "I16") return mx::int16;
  if (name == "I8") return mx::int8;
  if (name == "U64") return mx::uint64;
  if (name == "U32") return mx::uint32;
  if (name == "U16") return mx::uint16;
  if (name == "U8") return mx::uint8;
  if (name == "BOOL") return mx::bool_;
  return std::nullopt;
}

std::string safetensors_name(mx::Dtype dtype) {
  switch (dtype.val()) {
    case mx::Dtype::Val::float32:
      return "F32";
    case mx::Dtype::Val::float16:
      return "F16";
    case mx::Dtype::Val::bfloat16:
      return "BF16";
    case mx::Dtype::Val::float64:
      return "F64";
    case mx::Dtype::Val::int64:
      return "I64";
    case mx::Dtype::Val::int32:
      return "I32";
    case mx::Dtype::Val::int16:
      return "I16";
    case mx::Dtype::Val::int8:
      return "I8";
    case mx::Dtype::Val::uint64:
      return "U64";
    case mx::Dtype::Val::uint32:
      return "U32";
    case mx::Dtype::Val::uint16:
      return "U16";
    case mx::Dtype::Val::uint8:
      return "U8";
    case mx::Dtype::Val::bool_:
      return "BOOL";
    default:
      return "?";
  }
}

}  // namespace ft::io::detail
