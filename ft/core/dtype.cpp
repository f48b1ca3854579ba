#include "ft/core/dtype.h"

#include <string>

#include "ft/core/error.h"

namespace ft {

namespace mx = mlx::core;

mx::Dtype parse_float_dtype(std::string_view name) {
  if (name == "float32") return mx::float32;
  if (name == "bfloat16") return mx::bfloat16;
  if (name == "float16") return mx::float16;
  throw Error("dtype",
              "unknown dtype '" + std::string(name) + "' (expected float32, bfloat16 or float16)");
}

const char* float_dtype_name(mx::Dtype dtype) {
  if (dtype == mx::bfloat16) return "bfloat16";
  if (dtype == mx::float16) return "float16";
  FT_ASSERT(dtype == mx::float32);
  return "float32";
}

}  // namespace ft
