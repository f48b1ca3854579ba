#include "ft/kernels/swiglu.h"

#include <climits>
#include <string>
#include <vector>

#include <mlx/backend/cuda/cuda.h>  // defines: mx::cu::is_available
#include <mlx/fast.h>               // defines: mx::fast::precompiled_cuda_kernel
#include <mlx/ops.h>
#include <mlx/transforms.h>  // defines: mx::custom_vjp

#include "ft/core/error.h"
#include "ft/kernels/cpu/swiglu.h"

#ifdef FT_HAVE_PTX
namespace ft::kernels::ptx {
extern const char* const swiglu;  // ft/kernels/cuda/swiglu.cu, embedded at build time
}
#endif

namespace ft::kernels {
namespace {

#ifdef FT_HAVE_PTX
constexpr bool kHavePtx = true;
#else
constexpr bool kHavePtx = false;
#endif

// The kernels' name suffix for a storage dtype; empty where no kernel exists.
std::string kernel_suffix(mx::Dtype dtype) {
  if (dtype == mx::float32) return "f32";
  if (dtype == mx::bfloat16) return "bf16";
  if (dtype == mx::float16) return "f16";
  return "";
}

void check_inputs(const mx::array& gate, const mx::array& up) {
  FT_CHECK(gate.shape() == up.shape(), "swiglu", "gate and up must have the same shape, got ",
           gate.shape(), " and ", up.shape());
  FT_CHECK(gate.dtype() == up.dtype(), "swiglu", "gate and up must have the same dtype, got ",
           gate.dtype(), " and ", up.dtype());
  FT_CHECK(mx::issubdtype(gate.dtype(), mx::floating), "swiglu",
           "gate and up must be floating point, got ", gate.dtype());
}

// The dtype the composite computes in: float32, or float64 for float64 inputs.
mx::Dtype compute_dtype(mx::Dtype storage) {
  return mx::promote_types(storage, mx::float32);
}

// Gradients of silu(gate) * up from plain ops, in compute_dtype:
// d_gate = g * up * s * (1 + gate * (1 - s)), d_up = g * gate * s, with s = sigmoid(gate).
std::vector<mx::array> backward_composite(const mx::array& gate, const mx::array& up,
                                          const mx::array& cotangent, mx::Stream s) {
  const auto dtype = compute_dtype(gate.dtype());
  auto x = mx::astype(gate, dtype, s);
  auto u = mx::astype(up, dtype, s);
  auto g = mx::astype(cotangent, dtype, s);
  auto sig = mx::sigmoid(x, s);
  auto one = mx::array(1.0, dtype);
  auto slope = mx::multiply(sig, mx::add(one, mx::multiply(x, mx::subtract(one, sig, s), s), s), s);
  auto d_gate = mx::multiply(mx::multiply(g, u, s), slope, s);
  auto d_up = mx::multiply(g, mx::multiply(x, sig, s), s);
  return {mx::astype(d_gate, gate.dtype(), s), mx::astype(d_up, up.dtype(), s)};
}

#ifdef FT_HAVE_PTX
// Threads per block; each thread handles one 16-byte vector (4 to 8 elements).
constexpr int kBlock = 256;

// Launches ft_swiglu_<direction>_<suffix> over n elements. precompiled_cuda_kernel
// takes grid as the total thread count per dimension (it launches ceil(grid / block)
// blocks), passes input pointers, output pointers, then the scalars.
std::vector<mx::array> launch(const std::string& direction, const std::vector<mx::array>& inputs,
                              int n_outputs, mx::Stream s) {
  static const std::string ptx_text(ptx::swiglu);
  const auto& like = inputs[0];
  const int n = static_cast<int>(like.size());
  const int width = 16 / static_cast<int>(like.itemsize());
  const int threads = n / width + (n % width != 0);
  return mx::fast::precompiled_cuda_kernel(
      "ft_swiglu_" + direction + "_" + kernel_suffix(like.dtype()), ptx_text, inputs,
      std::vector<mx::Shape>(n_outputs, like.shape()),
      std::vector<mx::Dtype>(n_outputs, like.dtype()), {n}, {threads, 1, 1}, {kBlock, 1, 1},
      /*shared_memory=*/0, /*init_value=*/std::nullopt, /*ensure_row_contiguous=*/true, s);
}
#endif

// Which code runs forward and backward.
enum class Path { cuda, cpu, composite };

mx::array forward(const mx::array& gate, const mx::array& up, mx::Stream s, Path path) {
#ifdef FT_HAVE_PTX
  if (path == Path::cuda) return launch("forward", {gate, up}, 1, s)[0];
#endif
  if (path == Path::cpu) return cpu::swiglu_forward(gate, up, s);
  return swiglu_composite(gate, up, s);
}

std::vector<mx::array> backward(const mx::array& gate, const mx::array& up,
                                const mx::array& cotangent, mx::Stream s, Path path) {
#ifdef FT_HAVE_PTX
  // The kernel reads the cotangent in the storage dtype; a broadcast cotangent (the
  // vjp of a sum) is made contiguous by the launcher.
  if (path == Path::cuda)
    return launch("backward", {gate, up, mx::astype(cotangent, gate.dtype(), s)}, 2, s);
#endif
  if (path == Path::cpu) return cpu::swiglu_backward(gate, up, cotangent, s);
  return backward_composite(gate, up, cotangent, s);
}

}  // namespace

mx::array swiglu_composite(const mx::array& gate, const mx::array& up, mx::StreamOrDevice s) {
  check_inputs(gate, up);
  const auto dtype = compute_dtype(gate.dtype());
  auto x = mx::astype(gate, dtype, s);
  auto out = mx::multiply(mx::multiply(x, mx::sigmoid(x, s), s), mx::astype(up, dtype, s), s);
  return mx::astype(out, gate.dtype(), s);
}

bool swiglu_uses_cuda_kernel(const mx::array& gate, mx::StreamOrDevice s) {
  return kHavePtx && mx::to_stream(s).device.type == mx::Device::gpu && mx::cu::is_available() &&
         !kernel_suffix(gate.dtype()).empty() && gate.size() > 0 && gate.size() <= INT_MAX;
}

mx::array swiglu(const mx::array& gate, const mx::array& up, mx::StreamOrDevice s) {
  check_inputs(gate, up);
  const auto stream = mx::to_stream(s);
  Path path = Path::composite;
  if (swiglu_uses_cuda_kernel(gate, stream))
    path = Path::cuda;
  else if (cpu::swiglu_supported(gate.dtype(), stream) && gate.size() > 0)
    path = Path::cpu;
  auto fn = mx::custom_vjp(
      [stream, path](const std::vector<mx::array>& in) -> std::vector<mx::array> {
        return {forward(in[0], in[1], stream, path)};
      },
      [stream, path](const std::vector<mx::array>& primals,
                     const std::vector<mx::array>& cotangents, const std::vector<mx::array>&) {
        return backward(primals[0], primals[1], cotangents[0], stream, path);
      });
  return fn({gate, up})[0];
}

}  // namespace ft::kernels
