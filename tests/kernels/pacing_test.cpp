// Pacing of CPU evaluations (Note [Pacing the host thread]): a pacing point holds the host
// thread back to its stream, MLX's count of tasks in flight comes back whole, and the
// step's results do not depend on it.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include <mlx/backend/cpu/encoder.h>
#include <mlx/ops.h>
#include <mlx/scheduler.h>
#include <mlx/stream.h>
#include <mlx/transforms.h>

#include "ft/kernels/cpu/pacing.h"
#include "tests/test_util.h"

namespace mx = mlx::core;
using ft::kernels::cpu::kPaceDepth;
using ft::kernels::cpu::pace;
using ft::kernels::cpu::ScopedPacedEval;

namespace {

// Dispatches a slow task that sets `done`, then kPaceDepth + 1 pacing points; returns
// whether `done` was set when the last pacing point returned.
bool slow_task_done_after_pacing(mx::Stream stream) {
  auto& encoder = mx::cpu::get_command_encoder(stream);
  auto done = std::make_shared<std::atomic<bool>>(false);
  encoder.dispatch([done] {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    done->store(true);
  });
  for (int i = 0; i <= kPaceDepth; ++i) pace(encoder);
  const bool seen = done->load();
  mx::synchronize(stream);
  return seen;
}

TEST(Pacing, HoldsTheHostBackOnlyWhilePaced) {
  ft::testing::OnCpu cpu;
  const mx::Stream stream = mx::new_stream(mx::Device::cpu);
  EXPECT_FALSE(slow_task_done_after_pacing(stream));  // not paced: pace returns at once
  {
    ScopedPacedEval paced;
    EXPECT_TRUE(slow_task_done_after_pacing(stream));
  }
  EXPECT_FALSE(slow_task_done_after_pacing(stream));
}

TEST(Pacing, GivesBackMlxsCountOfTasksInFlight) {
  ft::testing::OnCpu cpu;
  const int before = mx::scheduler::n_active_tasks();
  {
    ScopedPacedEval outer;
    EXPECT_LT(mx::scheduler::n_active_tasks(), before);
    ScopedPacedEval inner;
    mx::array x = mx::sum(mx::arange(1000.0f));
    mx::eval(x);
    EXPECT_EQ(x.item<float>(), 499500.0f);
  }
  mx::synchronize();
  EXPECT_EQ(mx::scheduler::n_active_tasks(), before);
}

}  // namespace
