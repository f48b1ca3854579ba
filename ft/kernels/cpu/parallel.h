// Splitting a CPU kernel's work over threads. MLX runs its elementwise CPU work on the
// stream's one thread; these kernels use every core.
#pragma once

#include <cstdint>
#include <functional>

namespace ft::kernels::cpu {

// Threads the CPU kernels use: FT_NUM_THREADS if set, else OPENBLAS_NUM_THREADS (so one
// setting limits both BLAS and ft), else the hardware's thread count. Read once.
int num_threads();

// Calls body(begin, end) on contiguous, disjoint ranges covering [0, n), at most
// num_threads() of them and each at least min_per_thread long (so small jobs stay on the
// calling thread); the calling thread runs the first range. The split depends only on n,
// min_per_thread and the thread count, so a body that reduces each index on its own gives
// the same bits on every run. Returns after every range is done; rethrows the first
// exception a range threw.
void parallel_for(int64_t n, int64_t min_per_thread,
                  const std::function<void(int64_t begin, int64_t end)>& body);

}  // namespace ft::kernels::cpu
