// Data parallelism over MLX's distributed layer (mlx::core::distributed: the ring backend
// over TCP, NCCL, MPI). Every rank takes its share of the rows of each global batch, and
// the gradients, losses and token counts are summed across ranks before the step divides,
// clips and updates, so each rank makes the update one process would make on the whole
// batch (Note [Data parallelism] in data_parallel.cpp). `ft launch` starts the ranks.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <mlx/array.h>
#include <mlx/distributed/distributed.h>

namespace ft::train {

namespace mx = mlx::core;

// FT_DISTRIBUTED_BACKEND, set by ft launch for each rank it starts: ring, nccl or mpi.
inline constexpr const char* kBackendVariable = "FT_DISTRIBUTED_BACKEND";

class DataParallel {
 public:
  // One process alone.
  DataParallel() = default;
  // The group of the ranks ft launch started (FT_DISTRIBUTED_BACKEND and the backend's own
  // variables), or one process alone when the variable is not set. Throws ft::Error naming
  // the rank and the fault when the backend is missing from this MLX build or the group
  // cannot form (a rank that is not there, a port in use).
  static DataParallel from_environment();

  int rank() const { return group_ ? group_->rank() : 0; }
  int size() const { return group_ ? group_->size() : 1; }
  bool alone() const { return size() == 1; }
  const std::string& backend() const { return backend_; }

  // Each array summed over the ranks, lazily, as float32, through one all-reduce of them
  // all end to end (each array keeps its shape). Alone: the arrays as they are.
  std::vector<mx::array> sum(const std::vector<mx::array>& arrays) const;
  // Returns once every rank has called it.
  void barrier() const;
  // Whether `flag` holds on any rank (every rank gets the same answer).
  bool any(bool flag) const;
  // Throws ft::Error unless every rank passes the same text (hashed), naming `what` and
  // the first rank that differs from rank 0.
  void check_same(const std::string& text, const std::string& what) const;
  // Rows [rank * n / size, (rank + 1) * n / size) of each (n, ...) array: this rank's
  // share of a global batch.
  std::vector<mx::array> rows(const std::vector<mx::array>& batch) const;

 private:
  std::optional<mx::distributed::Group> group_;
  std::string backend_ = "none";
};

}  // namespace ft::train
