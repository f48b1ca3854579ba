// SwiGLU's forward and backward on the CPU (kernels/swiglu.h picks them on CPU streams):
// the vectorised exp of cpu/vec_math.h and every core, where MLX's composite runs a libm
// exp per value on one thread.
#pragma once

#include <vector>

#include <mlx/array.h>
#include <mlx/stream.h>

namespace ft::kernels::cpu {

namespace mx = mlx::core;

// silu(gate) * up, in float32 math rounded once to the storage dtype. gate and up: same
// shape and dtype (float32, bfloat16, float16), checked by the caller.
mx::array swiglu_forward(const mx::array& gate, const mx::array& up, mx::Stream s);

// {d_gate, d_up} for the cotangent g of silu(gate) * up, with s = sigmoid(gate):
// d_gate = g * up * s * (1 + gate * (1 - s)), d_up = g * gate * s. The cotangent is read in
// the storage dtype (broadcast cotangents are made contiguous).
std::vector<mx::array> swiglu_backward(const mx::array& gate, const mx::array& up,
                                       const mx::array& cotangent, mx::Stream s);

// Whether the two above take this dtype on this stream.
bool swiglu_supported(mx::Dtype dtype, mx::Stream s);

}  // namespace ft::kernels::cpu
