// SwiGLU, the gated activation of Llama-style MLPs: silu(gate) * up, fused.
#pragma once

#include <mlx/array.h>
#include <mlx/utils.h>

namespace ft::kernels {

namespace mx = mlx::core;

// silu(gate) * up elementwise, with a hand-written backward (one pass for both
// gradients). gate and up: same shape, same floating dtype (float32, bfloat16, float16;
// float64 where the stream's device has it); the result has that shape and dtype. Math
// runs in float32 (float64 for float64) and is rounded once to the storage dtype. On MLX's CUDA
// backend, with a GPU stream, forward and backward are ft's CUDA kernels; on a CPU stream,
// ft's CPU kernels (kernels/cpu/swiglu.h; float32, bfloat16, float16); elsewhere
// swiglu_composite and its composite backward run. Throws ft::Error for mismatched shapes or
// dtypes.
mx::array swiglu(const mx::array& gate, const mx::array& up, mx::StreamOrDevice s = {});

// The same function from plain MLX ops, computed in float32 (float64 for float64
// inputs); the reference for swiglu and its fallback where the CUDA kernels do not run.
mx::array swiglu_composite(const mx::array& gate, const mx::array& up, mx::StreamOrDevice s = {});

// Whether swiglu(gate, up, s) runs the CUDA kernels: the library was built with them
// (nvcc found), MLX's CUDA backend is available, s is a GPU stream, gate's dtype is one
// the kernels take and the element count is nonzero and fits their 32-bit index.
bool swiglu_uses_cuda_kernel(const mx::array& gate, mx::StreamOrDevice s = {});

}  // namespace ft::kernels
