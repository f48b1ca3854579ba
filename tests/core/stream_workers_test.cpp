#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <set>
#include <stdexcept>
#include <thread>
#include <vector>

#include <mlx/ops.h>
#include <mlx/stream.h>
#include <mlx/transforms.h>

#include "ft/core/error.h"
#include "ft/core/stream_workers.h"
#include "tests/test_util.h"

namespace mx = mlx::core;

// Every worker runs its task at once: each waits until all have started, which would
// never happen (the wait would time out) if they ran one after another.
TEST(StreamWorkers, RunsEveryTaskAtOnceOnItsOwnThread) {
  ft::StreamWorkers workers(3);
  EXPECT_EQ(workers.size(), 3);
  std::atomic<int> started{0};
  std::vector<std::thread::id> ids(3);
  std::vector<int> met(3, 0);  // not vector<bool>: its elements share words, so threads race
  workers.run([&](int i) {
    ids[i] = std::this_thread::get_id();
    ++started;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (started.load() < 3 && std::chrono::steady_clock::now() < deadline)
      std::this_thread::yield();
    met[i] = started.load() == 3 ? 1 : 0;
  });
  EXPECT_EQ(met, std::vector<int>(3, 1));
  std::set<std::thread::id> distinct(ids.begin(), ids.end());
  EXPECT_EQ(distinct.size(), 3u);
  EXPECT_EQ(distinct.count(std::this_thread::get_id()), 0u);
  // The threads stay: a second run lands on the same ones.
  std::vector<std::thread::id> again(3);
  workers.run([&](int i) { again[i] = std::this_thread::get_id(); });
  EXPECT_EQ(again, ids);
}

// Each worker has default streams of its own, and evaluates graphs on them.
TEST(StreamWorkers, WorkersEvaluateOnStreamsOfTheirOwn) {
  ft::testing::OnCpu cpu;
  ft::StreamWorkers workers(2);
  std::vector<int> streams(2);
  std::vector<float> sums(2);
  workers.run([&](int i) {
    streams[i] = mx::default_stream(mx::Device::cpu).index;
    mx::array x = mx::arange(10.0f) * mx::array(float(i + 1));
    sums[i] = mx::sum(x).item<float>();
  });
  EXPECT_NE(streams[0], streams[1]);
  EXPECT_NE(streams[0], mx::default_stream(mx::Device::cpu).index);
  EXPECT_EQ(sums, (std::vector<float>{45.0f, 90.0f}));
}

// A task's exception reaches the caller after every task has finished; the pool still works.
TEST(StreamWorkers, RethrowsTheFirstWorkersErrorAfterAllFinish) {
  ft::StreamWorkers workers(3);
  std::atomic<int> finished{0};
  try {
    workers.run([&](int i) {
      if (i >= 1) {
        ++finished;
        throw ft::Error("test", "worker " + std::to_string(i));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      ++finished;
    });
    ADD_FAILURE() << "no exception";
  } catch (const ft::Error& e) {
    EXPECT_EQ(e.fact(), "worker 1");
  }
  EXPECT_EQ(finished.load(), 3);
  std::atomic<int> ran{0};
  workers.run([&](int) { ++ran; });
  EXPECT_EQ(ran.load(), 3);
  EXPECT_THROW(ft::StreamWorkers(0), ft::Error);
}
