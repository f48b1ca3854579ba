// The floating dtypes ft trains and stores in, by the names transformers and MLX use:
// the one parser of --dtype, --optimizer-state and config.json's torch_dtype.
#pragma once

#include <string_view>

#include <mlx/dtype.h>

namespace ft {

// "float32", "bfloat16" or "float16"; throws ft::Error("dtype", ...) naming the word and
// the three names otherwise.
mlx::core::Dtype parse_float_dtype(std::string_view name);

// The name parse_float_dtype reads; dtype must be float32, bfloat16 or float16.
const char* float_dtype_name(mlx::core::Dtype dtype);

}  // namespace ft
