// PyTorch checkpoints (pytorch_model.bin): a zip holding data.pkl and data/<key> storages.
//
// data.pkl is read by a small pickle interpreter that knows the opcodes torch.save
// emits for a state dict and allows only the globals that rebuild tensors
// (torch._utils._rebuild_tensor_v2, torch.*Storage, collections.OrderedDict). Any
// other global is refused with an ft::Error naming it: nothing in the file is run.
#pragma once

#include <filesystem>
#include <optional>

#include <mlx/array.h>  // defines: mlx::core::Dtype

#include "ft/core/param_map.h"

namespace ft::io {

// The state dict's tensors in the file's order, floating-point ones cast to dtype when
// given. Views are copied out of their storages with their offsets and strides.
ParamMap load_torch_checkpoint(const std::filesystem::path& file,
                               std::optional<mlx::core::Dtype> dtype);

}  // namespace ft::io
