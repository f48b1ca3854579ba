// Row shards on the CPU: a batch's rows split into one shard per thread, each shard's graph
// built and evaluated at once on a worker thread with MLX streams of its own (Note [Row
// shards on the CPU] in row_shards.cpp). The training step and evaluation use it.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include <mlx/array.h>

#include "ft/core/stream_workers.h"

namespace ft {

namespace mx = mlx::core;

// The shards a batch of `rows` rows gets: on the CPU `requested` (0: one per CPU thread,
// ft::kernels::cpu::num_threads()), at most one per row; elsewhere 1.
int row_shards(int rows, int requested = 0);

// As row_shards for the batch's rows; 1 unless every array is (rows, ...) with the same rows.
int batch_row_shards(const std::vector<mx::array>& batch, int requested = 0);

// Rows [rows * shard / shards, rows * (shard + 1) / shards) of every array of the batch.
std::vector<mx::array> shard_rows(const std::vector<mx::array>& batch, int shard, int shards);

class RowShards {
 public:
  using ShardFn =
      std::function<std::vector<mx::array>(const std::vector<mx::array>& rows, int shard)>;

  // Evaluates the batch, then runs fn on every shard at once, each on its own worker (made
  // on first use) under a cpu::ScopedThreadLimit of the threads per shard, and evaluates the
  // arrays fn returns there. Returns, output by output, their sums over the shards added in
  // shard order (lazy: the caller evaluates them). Every shard must return as many arrays.
  // Whatever else fn's graph reads must be evaluated already: a stream works only on the
  // thread that made it. paced: the evaluations run under a kernels::cpu::ScopedPacedEval
  // (Note [Pacing the host thread]); their graphs should then pass ft's pacing points often,
  // as a model's layers do.
  std::vector<mx::array> sum(const std::vector<mx::array>& batch, int shards, const ShardFn& fn,
                             bool paced = true);

 private:
  std::unique_ptr<StreamWorkers> workers_;
};

}  // namespace ft
