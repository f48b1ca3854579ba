// Host threads that each own MLX default streams, kept alive so that what was traced on
// them (mx::compile caches a trace per default stream) stays cached between calls.
//
// MLX gives every host thread its own default stream on each device, and a CPU stream its
// own worker thread; graphs built and evaluated on different host threads run at once.
// StreamWorkers::run hands task(i) to worker i for every i and waits for all of them.
#pragma once

#include <functional>
#include <memory>
#include <vector>

namespace ft {

class StreamWorkers {
 public:
  explicit StreamWorkers(int count);
  ~StreamWorkers();
  StreamWorkers(const StreamWorkers&) = delete;
  StreamWorkers& operator=(const StreamWorkers&) = delete;

  int size() const { return static_cast<int>(workers_.size()); }

  // Runs task(i) on worker i, every worker at once, and returns when all are done;
  // rethrows the exception of the lowest-numbered worker that threw.
  void run(const std::function<void(int)>& task);

 private:
  struct Worker;
  std::vector<std::unique_ptr<Worker>> workers_;
};

}  // namespace ft
