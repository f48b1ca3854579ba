// SwiGLU forward and backward, elementwise: out = silu(gate) * up.
//
// Compiled to PTX at build time and launched through mx::fast::precompiled_cuda_kernel
// (ft/kernels/swiglu.cpp). That launcher looks kernels up by their exact symbol name,
// so every entry point is extern "C", one per storage dtype. It passes arguments in
// this order: input pointers, output pointers, then the scalars (here the element
// count n as a 32-bit int). The arrays are row-contiguous (the launcher copies when
// they are not), so flat indexing is enough. Math runs in f32; only loads and stores
// use the storage type.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

namespace {

__device__ __forceinline__ float to_float(float x) {
  return x;
}
__device__ __forceinline__ float to_float(__nv_bfloat16 x) {
  return __bfloat162float(x);
}
__device__ __forceinline__ float to_float(__half x) {
  return __half2float(x);
}

template <typename T>
__device__ __forceinline__ T from_float(float x);
template <>
__device__ __forceinline__ float from_float<float>(float x) {
  return x;
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}
template <>
__device__ __forceinline__ __half from_float<__half>(float x) {
  return __float2half_rn(x);
}

__device__ __forceinline__ float sigmoid(float x) {
  return 1.0f / (1.0f + expf(-x));
}

// 16 bytes of T: one vector load or store per operand.
template <typename T>
struct alignas(16) Pack {
  static constexpr int size = 16 / sizeof(T);
  T v[size];
};

__device__ __forceinline__ bool aligned16(const void* p) {
  return (reinterpret_cast<uintptr_t>(p) & 15) == 0;
}

__device__ __forceinline__ float silu(float x) {
  return x * sigmoid(x);
}

template <typename T>
__device__ __forceinline__ T forward_one(T gate, T up) {
  return from_float<T>(silu(to_float(gate)) * to_float(up));
}

// One pass over the whole array: vectors of Pack<T>::size elements where every pointer
// is 16-byte aligned (slices of a buffer may not be), then the remainder one by one.
template <typename T>
__device__ void swiglu_forward(const T* __restrict__ gate, const T* __restrict__ up,
                               T* __restrict__ out, int n) {
  constexpr int width = Pack<T>::size;
  const int64_t thread = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  int64_t vectorised = 0;
  if (aligned16(gate) && aligned16(up) && aligned16(out)) {
    const int64_t n_packs = n / width;
    for (int64_t p = thread; p < n_packs; p += stride) {
      Pack<T> g = reinterpret_cast<const Pack<T>*>(gate)[p];
      Pack<T> u = reinterpret_cast<const Pack<T>*>(up)[p];
      Pack<T> o;
#pragma unroll
      for (int k = 0; k < width; ++k) o.v[k] = forward_one(g.v[k], u.v[k]);
      reinterpret_cast<Pack<T>*>(out)[p] = o;
    }
    vectorised = n_packs * width;
  }
  for (int64_t i = vectorised + thread; i < n; i += stride) {
    out[i] = forward_one(gate[i], up[i]);
  }
}

// d_gate = g * up * s * (1 + x * (1 - s)), d_up = g * x * s, with s = sigmoid(x).
template <typename T>
__device__ __forceinline__ void backward_one(T gate, T up, T cotangent, T& d_gate, T& d_up) {
  float x = to_float(gate), u = to_float(up), g = to_float(cotangent);
  const float s = sigmoid(x);
  d_gate = from_float<T>(g * u * s * (1.0f + x * (1.0f - s)));
  d_up = from_float<T>(g * silu(x));
}

template <typename T>
__device__ void swiglu_backward(const T* __restrict__ gate, const T* __restrict__ up,
                                const T* __restrict__ cotangent, T* __restrict__ d_gate,
                                T* __restrict__ d_up, int n) {
  constexpr int width = Pack<T>::size;
  const int64_t thread = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  int64_t vectorised = 0;
  if (aligned16(gate) && aligned16(up) && aligned16(cotangent) && aligned16(d_gate) &&
      aligned16(d_up)) {
    const int64_t n_packs = n / width;
    for (int64_t p = thread; p < n_packs; p += stride) {
      Pack<T> x = reinterpret_cast<const Pack<T>*>(gate)[p];
      Pack<T> u = reinterpret_cast<const Pack<T>*>(up)[p];
      Pack<T> g = reinterpret_cast<const Pack<T>*>(cotangent)[p];
      Pack<T> dg, du;
#pragma unroll
      for (int k = 0; k < width; ++k) backward_one(x.v[k], u.v[k], g.v[k], dg.v[k], du.v[k]);
      reinterpret_cast<Pack<T>*>(d_gate)[p] = dg;
      reinterpret_cast<Pack<T>*>(d_up)[p] = du;
    }
    vectorised = n_packs * width;
  }
  for (int64_t i = vectorised + thread; i < n; i += stride) {
    backward_one(gate[i], up[i], cotangent[i], d_gate[i], d_up[i]);
  }
}

}  // namespace

#define FT_SWIGLU_KERNELS(suffix, T)                                                        \
  extern "C" __global__ void ft_swiglu_forward_##suffix(const T* gate, const T* up, T* out, \
                                                        int n) {                            \
    swiglu_forward<T>(gate, up, out, n);                                                    \
  }                                                                                         \
  extern "C" __global__ void ft_swiglu_backward_##suffix(                                   \
      const T* gate, const T* up, const T* cotangent, T* d_gate, T* d_up, int n) {          \
    swiglu_backward<T>(gate, up, cotangent, d_gate, d_up, n);                               \
  }

FT_SWIGLU_KERNELS(f32, float)
FT_SWIGLU_KERNELS(bf16, __nv_bfloat16)
FT_SWIGLU_KERNELS(f16, __half)
