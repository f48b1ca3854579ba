#include "ft/core/stream_workers.h"

#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>

#include <mlx/stream.h>

#include "ft/core/error.h"

namespace ft {

struct StreamWorkers::Worker {
  std::mutex mutex;
  std::condition_variable wake;  // a task arrived, or the pool is closing
  std::condition_variable done;  // the task finished
  const std::function<void(int)>* task = nullptr;
  std::exception_ptr error;
  bool closing = false;
  std::thread thread;

  explicit Worker(int index) : thread([this, index] { loop(index); }) {}

  void loop(int index) {
    std::unique_lock lock(mutex);
    while (true) {
      wake.wait(lock, [this] { return task != nullptr || closing; });
      if (task == nullptr) break;
      lock.unlock();
      std::exception_ptr caught;
      try {
        (*task)(index);
      } catch (...) {
        caught = std::current_exception();
      }
      lock.lock();
      error = caught;
      task = nullptr;
      done.notify_one();
    }
    lock.unlock();
    // The streams this thread made (its default ones) end with it.
    mlx::core::clear_streams();
  }
};

StreamWorkers::StreamWorkers(int count) {
  FT_CHECK(count > 0, "stream_workers", "needs at least one worker, got ", count);
  for (int i = 0; i < count; ++i) workers_.push_back(std::make_unique<Worker>(i));
}

StreamWorkers::~StreamWorkers() {
  for (auto& w : workers_) {
    {
      std::lock_guard lock(w->mutex);
      w->closing = true;
    }
    w->wake.notify_one();
  }
  for (auto& w : workers_) w->thread.join();
}

void StreamWorkers::run(const std::function<void(int)>& task) {
  for (auto& w : workers_) {
    {
      std::lock_guard lock(w->mutex);
      w->task = &task;
      w->error = nullptr;
    }
    w->wake.notify_one();
  }
  std::exception_ptr first;
  for (auto& w : workers_) {
    std::unique_lock lock(w->mutex);
    w->done.wait(lock, [&] { return w->task == nullptr; });
    if (w->error && !first) first = w->error;
  }
  if (first) std::rethrow_exception(first);
}

}  // namespace ft
