#include "ft/kernels/cpu/parallel.h"

#include <dlfcn.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <exception>
#include <string>
#include <thread>
#include <vector>

namespace ft::kernels::cpu {
namespace {

int threads_from_env(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr) return 0;
  try {
    return std::max(0, std::stoi(value));
  } catch (const std::exception&) {
    return 0;
  }
}

std::atomic<int> g_count{0};  // set_num_threads's; 0: from the environment
std::atomic<int> g_limit{0};  // ScopedThreadLimit's; 0: none
std::atomic<int> g_shards{1};  // ScopedThreadLimit's

using SetThreads = void (*)(int);
using GetThreads = int (*)();

}  // namespace

int num_threads() {
  static const int from_env = [] {
    for (const char* name : {"FT_NUM_THREADS", "OPENBLAS_NUM_THREADS"})
      if (int n = threads_from_env(name); n > 0) return n;
    return std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  }();
  int count = g_count.load() > 0 ? g_count.load() : from_env;
  int limit = g_limit.load();
  return limit > 0 ? std::min(limit, count) : count;
}

void set_num_threads(int threads) {
  g_count.store(std::max(1, threads));
}

std::optional<int> blas_threads() {
  auto get = reinterpret_cast<GetThreads>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
  if (get == nullptr) return std::nullopt;
  return get();
}

bool set_blas_threads(int threads) {
  auto set = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
  if (set == nullptr) return false;
  set(threads);
  return true;
}

int concurrent_shards() {
  return g_shards.load();
}

ScopedThreadLimit::ScopedThreadLimit(int threads, int shards)
    : previous_limit_(g_limit.exchange(std::max(1, threads))),
      previous_shards_(g_shards.exchange(std::max(1, shards))),
      previous_blas_(blas_threads()) {
  if (previous_blas_) set_blas_threads(std::max(1, threads));
}

ScopedThreadLimit::~ScopedThreadLimit() {
  g_limit.store(previous_limit_);
  g_shards.store(previous_shards_);
  if (previous_blas_) set_blas_threads(*previous_blas_);
}

void parallel_for(int64_t n, int64_t min_per_thread,
                  const std::function<void(int64_t, int64_t)>& body) {
  if (n <= 0) return;
  int64_t parts = std::clamp<int64_t>(n / std::max<int64_t>(min_per_thread, 1), 1, num_threads());
  if (parts == 1) {
    body(0, n);
    return;
  }
  auto range = [&](int64_t part) { return std::pair{n * part / parts, n * (part + 1) / parts}; };
  std::vector<std::exception_ptr> errors(parts);
  std::vector<std::thread> workers;
  workers.reserve(parts - 1);
  for (int64_t part = 1; part < parts; ++part) {
    workers.emplace_back([&, part] {
      try {
        auto [begin, end] = range(part);
        body(begin, end);
      } catch (...) {
        errors[part] = std::current_exception();
      }
    });
  }
  try {
    auto [begin, end] = range(0);
    body(begin, end);
  } catch (...) {
    errors[0] = std::current_exception();
  }
  for (auto& worker : workers) worker.join();
  for (auto& error : errors)
    if (error) std::rethrow_exception(error);
}

}  // namespace ft::kernels::cpu
