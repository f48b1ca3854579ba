#include "ft/core/device.h"

#include <unistd.h>

#include <cctype>  // defines: std::tolower
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <thread>

#ifdef __GLIBC__
#include <malloc.h>  // defines: mallopt
#endif

#include <mlx/backend/cuda/cuda.h>
#include <mlx/backend/metal/metal.h>
#include <mlx/memory.h>
#include <mlx/version.h>

#include "ft/core/error.h"

// OpenBLAS's name for the kernels it picked; weak, so that another BLAS leaves it null.
extern "C" char* openblas_get_corename(void) __attribute__((weak));

namespace ft {
namespace {

std::string cpu_model_name() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      auto colon = line.find(':');
      if (colon != std::string::npos) return line.substr(line.find_first_not_of(" \t", colon + 1));
    }
  }
  return "unknown";
}

size_t physical_memory() {
  long pages = sysconf(_SC_PHYS_PAGES), page_size = sysconf(_SC_PAGE_SIZE);
  return pages > 0 && page_size > 0 ? static_cast<size_t>(pages) * static_cast<size_t>(page_size)
                                    : 0;
}

// /proc/meminfo's MemAvailable in bytes; 0 where there is none.
size_t available_memory() {
  std::ifstream in("/proc/meminfo");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("MemAvailable:", 0) != 0) continue;
    std::istringstream fields(line.substr(13));
    size_t kib = 0;
    return fields >> kib ? kib * 1024 : 0;
  }
  return 0;
}

template <typename T>
T info_value(const std::unordered_map<std::string, std::variant<std::string, size_t>>& info,
             const std::string& key, T fallback) {
  auto it = info.find(key);
  if (it == info.end()) return fallback;
  if (auto value = std::get_if<T>(&it->second)) return *value;
  return fallback;
}

}  // namespace

std::string backend_name() {
  if (mx::cu::is_available()) return "cuda";
  if (mx::metal::is_available()) return "metal";
  return "cpu";
}

SystemInfo system_info() {
  SystemInfo info;
  info.mlx_version = mx::version();
  info.backend = backend_name();
  if (info.backend != "cpu") {
    int count = mx::device_count(mx::Device::gpu);
    for (int i = 0; i < count; ++i) {
      const auto& d = mx::device_info(mx::Device(mx::Device::gpu, i));
      GpuInfo gpu;
      gpu.index = i;
      gpu.name = info_value<std::string>(d, "device_name", "unknown");
      gpu.architecture = info_value<std::string>(d, "architecture", "");
      gpu.total_memory =
          info_value<size_t>(d, "total_memory", info_value<size_t>(d, "memory_size", 0));
      gpu.free_memory = info_value<size_t>(d, "free_memory", 0);
      info.gpus.push_back(gpu);
    }
  }
  info.cpu_model = cpu_model_name();
  info.cpu_cores = static_cast<int>(std::thread::hardware_concurrency());
  info.blas_core = blas_core();
  info.system_memory = physical_memory();
  info.mlx_memory_limit = mx::get_memory_limit();
  info.mlx_active_memory = mx::get_active_memory();
  info.mlx_cache_memory = mx::get_cache_memory();
  return info;
}

mx::Device preferred_device() {
  bool have_gpu = mx::is_available(mx::Device::gpu);
  if (const char* env = std::getenv("FT_DEVICE")) {
    std::string choice = env;
    if (choice == "cpu") return mx::Device::cpu;
    FT_CHECK(choice == "gpu", "device", "FT_DEVICE must be 'cpu' or 'gpu', got '", choice, "'");
    FT_CHECK(have_gpu, "device", "FT_DEVICE=gpu but MLX's ", backend_name(), " backend has no GPU");
    return mx::Device::gpu;
  }
  return have_gpu ? mx::Device::gpu : mx::Device::cpu;
}

std::string use_preferred_device() {
  // MLX compiles some CUDA kernels at run time and looks for the toolkit's headers
  // through CUDA_HOME or CUDA_PATH; point it at the usual place when neither is set.
  if (backend_name() == "cuda" && !std::getenv("CUDA_HOME") && !std::getenv("CUDA_PATH") &&
      std::filesystem::exists("/usr/local/cuda/include/cuda.h"))
    setenv("CUDA_HOME", "/usr/local/cuda", 0);
  auto device = preferred_device();
  mx::set_default_device(device);
  if (device.type == mx::Device::cpu) return "cpu (" + cpu_model_name() + ")";
  const auto& d = mx::device_info(device);
  return "gpu " + std::to_string(device.index) + " (" + backend_name() + ", " +
         info_value<std::string>(d, "device_name", "unknown") + ")";
}

size_t memory_budget() {
  const mx::Device device = mx::default_device();
  if (device.type == mx::Device::gpu) {
    // Not MLX's memory limit: above it MLX waits for queued work rather than failing, and
    // the estimate counts what the limit holds back (Note [Memory on MLX's CUDA backend]).
    const auto& d = mx::device_info(device);
    size_t budget = info_value<size_t>(d, "free_memory", 0);
    if (budget == 0) budget = info_value<size_t>(d, "max_recommended_working_set_size", 0);
    if (budget == 0)
      budget = info_value<size_t>(d, "total_memory", info_value<size_t>(d, "memory_size", 0));
    return budget;
  }
  const size_t available = available_memory();
  return available > 0 ? available : physical_memory();
}

std::string format_bytes(size_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double value = static_cast<double>(bytes);
  int unit = 0;
  while (value >= 1024.0 && unit < 4) value /= 1024.0, ++unit;
  std::ostringstream out;
  out.precision(unit == 0 ? 0 : 1);
  out << std::fixed << value << " " << units[unit];
  return out.str();
}

// Note [Host allocations of a training step]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// MLX's CPU backend allocates arrays with malloc and frees them when they die. glibc
// serves blocks above its mmap threshold (128 KiB at first) with fresh mmaps and returns
// them on free, and trims the heap's top, so every step of a training loop faults in and
// zero-fills the same hundreds of MiB again: 312k page faults over 13 steps of
// `ft bench --shape tiny` on a 2-core machine. Keeping blocks up to 32 MiB (glibc's
// largest mmap threshold) in the heap, and never trimming it, cuts that to about 100k; the
// process keeps its peak, which a training run reaches every step anyway.
void keep_freed_host_memory() {
#ifdef __GLIBC__
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, std::numeric_limits<int>::max());
#endif
}

// Note [OpenBLAS on CPUs it does not know]
// OpenBLAS picks its kernels by the CPU's vendor, family and model, and a CPU newer than
// the library, or one a virtual machine names only "Intel(R) Xeon(R) Processor", gets the
// Prescott kernels: SSE3, no AVX. On such a 2-core Xeon with AVX-512, Debian 12's OpenBLAS
// 0.3.21 ran the tiny LoRA benchmark at 1,936 to 2,050 tokens/s with Prescott's sgemm
// (41% of the time in sgemm_kernel_PRESCOTT), and at 3,050 with OPENBLAS_CORETYPE=SkylakeX
// (2,784 with Haswell). OpenBLAS reads that variable only as it loads, before main, so ft
// sets it and runs itself again; a value the user set is kept, and the children of ft
// serve and ft launch inherit it. The families kept are those with AVX2 kernels.
std::string blas_core_for(const std::string& detected, bool avx512, bool avx2_fma) {
  std::string lower;
  for (char c : detected) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (const char* modern : {"haswell", "zen", "skylakex", "cooperlake", "sapphirerapids"})
    if (lower == modern) return "";
  if (avx512) return "SkylakeX";
  if (avx2_fma) return "Haswell";
  return "";
}

std::string blas_core() {
  if (!openblas_get_corename) return "";
  const char* name = openblas_get_corename();
  return name ? name : "";
}

void choose_blas_core(char** argv) {
#if defined(__linux__) && defined(__x86_64__)
  if (std::getenv("OPENBLAS_CORETYPE")) return;
  const std::string detected = blas_core();
  if (detected.empty()) return;
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512cd") &&
                      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
                      __builtin_cpu_supports("avx512vl");
  const bool avx2_fma = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  const std::string wanted = blas_core_for(detected, avx512, avx2_fma);
  if (wanted.empty()) return;
  setenv("OPENBLAS_CORETYPE", wanted.c_str(), 1);
  execv("/proc/self/exe", argv);
  unsetenv("OPENBLAS_CORETYPE");  // the exec failed: carry on with OpenBLAS's choice
#else
  (void)argv;
#endif
}

}  // namespace ft
