// Turning bytes read from a checkpoint file into MLX arrays (internal to ft/io).
#pragma once

#include <cstddef>
#include <optional>
#include <string>

#include <mlx/array.h>  // defines: mlx::core::array, Dtype, Shape

namespace ft::io::detail {

namespace mx = mlx::core;

// A row-major array of this shape and dtype holding a copy of nbytes bytes at data
// (little-endian). nbytes must equal the shape's element count times the item size.
mx::array array_from_bytes(const void* data, size_t nbytes, const mx::Shape& shape,
                           mx::Dtype dtype);

// Casts floating-point arrays to dtype (when given) and evaluates, so each tensor's
// file bytes are freed before the next one is read. Integer arrays (token ids,
// packed quantized weights) keep their dtype.
mx::array finish_tensor(const mx::array& a, std::optional<mx::Dtype> dtype);

// "F32" -> float32 etc.; nullopt for a name safetensors does not define or MLX lacks.
std::optional<mx::Dtype> dtype_from_safetensors_name(const std::string& name);
std::string safetensors_name(mx::Dtype dtype);

}  // namespace ft::io::detail
