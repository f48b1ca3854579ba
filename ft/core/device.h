// The machine ft runs on: MLX's backend, its devices and memory, and device choice.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include <mlx/device.h>

namespace ft {

namespace mx = mlx::core;

struct GpuInfo {
  int index = 0;
  std::string name;
  std::string architecture;
  size_t total_memory = 0;  // bytes
  size_t free_memory = 0;   // bytes; 0 when the backend does not say
};

struct SystemInfo {
  std::string mlx_version;
  std::string backend;  // "cuda", "metal" or "cpu"
  std::vector<GpuInfo> gpus;
  std::string cpu_model;
  int cpu_cores = 0;
  std::string blas_core;         // OpenBLAS's kernel family, e.g. "SkylakeX"; "" if not OpenBLAS
  size_t system_memory = 0;      // bytes
  size_t mlx_memory_limit = 0;   // bytes, MLX's allocator limit
  size_t mlx_active_memory = 0;  // bytes
  size_t mlx_cache_memory = 0;   // bytes
};

SystemInfo system_info();
// "cuda" with an NVIDIA GPU, "metal" on Apple silicon, else "cpu".
std::string backend_name();
// The device work runs on: the GPU when the backend has one, else the CPU.
// FT_DEVICE=cpu|gpu overrides; an unavailable choice is an ft::Error.
mx::Device preferred_device();
// Makes preferred_device() MLX's default; returns a one-line description of it.
std::string use_preferred_device();
// The memory a training run may take on the default device: the GPU's free memory (its
// recommended working set or total where the backend does not say), or on the CPU the
// system's available memory (MemAvailable). 0 when nothing says.
size_t memory_budget();

// "12.3 GiB"
std::string format_bytes(size_t bytes);

// Keeps freed host memory for reuse instead of handing it back to the system (Note [Host
// allocations of a training step] in device.cpp). A no-op without glibc. Call it once at
// program start; the ft command does.
void keep_freed_host_memory();

// Note [OpenBLAS on CPUs it does not know] in device.cpp.
// The OpenBLAS kernel family to ask for on this CPU, given the one OpenBLAS chose (its
// openblas_get_corename()) and the CPU's features: "SkylakeX" with AVX-512, "Haswell" with
// AVX2 and FMA, where OpenBLAS fell back to a family that uses neither; "" to keep its choice.
std::string blas_core_for(const std::string& detected, bool avx512, bool avx2_fma);
// OpenBLAS's kernel family in use; "" when the BLAS is not OpenBLAS.
std::string blas_core();
// Call first thing in main: when blas_core_for names a family and OPENBLAS_CORETYPE is not
// set, runs this program again (same arguments) with OPENBLAS_CORETYPE set, since OpenBLAS
// reads it only as it loads. Returns when there is nothing to change or the exec failed.
void choose_blas_core(char** argv);

}  // namespace ft
