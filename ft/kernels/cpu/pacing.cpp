#include "ft/kernels/cpu/pacing.h"

#include <atomic>
#include <deque>
#include <future>
#include <memory>

#include <mlx/scheduler.h>
#include <mlx/stream.h>

namespace ft::kernels::cpu {

// Note [Pacing the host thread]
// MLX's eval walks a graph on the calling (host) thread and hands each primitive's work to
// the stream's worker thread. It runs ahead of the worker until more than a fixed number of
// tasks are in flight in the whole process, then waits for one to finish; every finished
// task, on any stream, wakes every waiting host thread. With row shards (Note [Row shards on
// the CPU] in ft/train/row_shards.cpp) two host threads share that one budget: each is woken
// by the other shard's tasks too, and preempts a busy worker only to find the budget still
// spent. The tiny bench's step on 2 threads made about 1300 context switches against 300
// for one shard alone, and a shard's worker went idle while the other shard held the budget.
// So while a ScopedPacedEval lives, the budget is out of reach (MLX's count is lowered by
// kLift), and ft's per-layer CPU kernels pace the host instead: each dispatch of attention
// or SwiGLU ends with a marker task, and the host waits until its stream has run the marker
// kPaceDepth points back. The host then stays a layer or so ahead of its worker, so the
// buffers of dispatched, not yet run tasks stay those of about a layer. Measured on the tiny
// bench (2 shards): peak memory 0.13 GiB with MLX's budget, 0.25 with none, 0.17 paced; the
// context switches per step went from about 1300 to 300.
// The marker signals when the task holding it is destroyed, so a stream that drops its tasks
// after an error cannot leave the host waiting.

namespace {

constexpr int kLift = 1000;

std::atomic<int> g_paced{0};

struct Marker {
  std::promise<void> reached;
  ~Marker() { reached.set_value(); }
};

}  // namespace

ScopedPacedEval::ScopedPacedEval() {
  const auto stream = mlx::core::default_stream(mlx::core::Device::cpu);
  for (int i = 0; i < kLift; ++i) mlx::core::scheduler::notify_task_completion(stream);
  g_paced.fetch_add(1);
}

ScopedPacedEval::~ScopedPacedEval() {
  g_paced.fetch_sub(1);
  const auto stream = mlx::core::default_stream(mlx::core::Device::cpu);
  for (int i = 0; i < kLift; ++i) mlx::core::scheduler::notify_new_task(stream);
}

void pace(mlx::core::cpu::CommandEncoder& encoder) {
  thread_local std::deque<std::shared_future<void>> pending;
  if (g_paced.load() == 0) {
    pending.clear();
    return;
  }
  auto marker = std::make_shared<Marker>();
  pending.push_back(marker->reached.get_future().share());
  encoder.dispatch([marker = std::move(marker)]() mutable { marker.reset(); });
  while (static_cast<int>(pending.size()) > kPaceDepth) {
    pending.front().wait();
    pending.pop_front();
  }
}

}  // namespace ft::kernels::cpu
