// NumPy .npz archives (a zip of .npy files), as written by np.savez and mx.savez.
#pragma once

#include <filesystem>
#include <optional>

#include <mlx/array.h>  // defines: mlx::core::Dtype

#include "ft/core/param_map.h"

namespace ft::io {

// Each member "name.npy" becomes the tensor "name", in natural name order; Fortran-order
// arrays are transposed back to row-major; floating-point tensors are cast to dtype
// when given.
ParamMap load_npz(const std::filesystem::path& file, std::optional<mlx::core::Dtype> dtype);

}  // namespace ft::io
