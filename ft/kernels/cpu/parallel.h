// Splitting a CPU kernel's work over threads. MLX runs its elementwise CPU work on the
// stream's one thread; these kernels use every core.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>

namespace ft::kernels::cpu {

// Threads the CPU kernels use: FT_NUM_THREADS if set, else OPENBLAS_NUM_THREADS (so one
// setting limits both BLAS and ft), else the hardware's thread count (read once); inside a
// ScopedThreadLimit, its limit.
int num_threads();
// Replaces the count from the environment (`ft bench --threads`).
void set_num_threads(int threads);

// OpenBLAS's thread count when MLX's matrix products go to OpenBLAS (setup.sh's build, Note
// [OpenBLAS under mlx[cpu]]), found at run time since the wheel, not ft's link line, picks
// the BLAS library; none for another BLAS.
std::optional<int> blas_threads();
// Sets it; false when the BLAS is not OpenBLAS.
bool set_blas_threads(int threads);

// How many row shards run at once: 1, or ScopedThreadLimit's count while one lives. Memory
// budgets meant for the process (linear_cross_entropy's chunk of logits) are split by it.
int concurrent_shards();

// While it lives, ft's CPU kernels use at most `threads` threads each, OpenBLAS uses
// `threads`, and concurrent_shards() is `shards`: for work split over `shards` threads of its
// own (Note [Row shards on the CPU] in ft/train/row_shards.cpp). Restores all three when it
// ends. One at a time: not for nesting, nor for use from several threads.
class ScopedThreadLimit {
 public:
  ScopedThreadLimit(int threads, int shards);
  ~ScopedThreadLimit();
  ScopedThreadLimit(const ScopedThreadLimit&) = delete;
  ScopedThreadLimit& operator=(const ScopedThreadLimit&) = delete;

 private:
  int previous_limit_;
  int previous_shards_;
  std::optional<int> previous_blas_;
};

// Calls body(begin, end) on contiguous, disjoint ranges covering [0, n), at most
// num_threads() of them and each at least min_per_thread long (so small jobs stay on the
// calling thread); the calling thread runs the first range. The split depends only on n,
// min_per_thread and the thread count, so a body that reduces each index on its own gives
// the same bits on every run. Returns after every range is done; rethrows the first
// exception a range threw.
void parallel_for(int64_t n, int64_t min_per_thread,
                  const std::function<void(int64_t begin, int64_t end)>& body);

}  // namespace ft::kernels::cpu
