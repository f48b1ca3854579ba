#include "ft/train/row_shards.h"

#include <algorithm>
#include <optional>

#include <mlx/device.h>
#include <mlx/ops.h>
#include <mlx/transforms.h>

#include "ft/core/error.h"
#include "ft/kernels/cpu/pacing.h"
#include "ft/kernels/cpu/parallel.h"

namespace ft {

// Note [Row shards on the CPU]
// MLX's CPU backend runs a stream's element-wise work on one thread and sends matrix
// products to BLAS. A LoRA step of a small model is many small products and element-wise
// passes, so a second BLAS thread speeds it up far less than a second core could (the tiny
// bench shape: 1.4x). So on the CPU a batch's rows are split into one shard per thread, and
// each shard's graph is built and evaluated on a host thread of its own (StreamWorkers),
// whose default stream MLX gives a worker thread of its own: the shards run at once, each
// with one BLAS thread and single-threaded ft kernels (ScopedThreadLimit). The caller adds
// up what the shards return in shard order, so a run gives the same bits every time, and
// equals the unsharded one up to float rounding. A stream can only be used from the thread
// that made it, so everything a shard's graph reads from outside (the batch, the model's
// arrays) is evaluated first on the calling thread. The training step traces its compiled
// function once per worker (mx::compile keeps a trace per default stream); tracing writes
// placeholders into the model, so traces take turns while evaluations overlap (step.cpp).

int row_shards(int rows, int requested) {
  if (mx::default_device() != mx::Device::cpu) return 1;
  return std::clamp(rows, 1, requested > 0 ? requested : kernels::cpu::num_threads());
}

int batch_row_shards(const std::vector<mx::array>& batch, int requested) {
  if (batch.empty()) return 1;
  for (const auto& a : batch)
    if (a.ndim() == 0 || a.shape(0) != batch[0].shape(0)) return 1;
  return row_shards(batch[0].shape(0), requested);
}

std::vector<mx::array> shard_rows(const std::vector<mx::array>& batch, int shard, int shards) {
  std::vector<mx::array> part;
  for (const auto& a : batch) {
    int rows = a.shape(0);
    mx::Shape lo(a.ndim(), 0), hi = a.shape();
    lo[0] = rows * shard / shards;
    hi[0] = rows * (shard + 1) / shards;
    part.push_back(mx::slice(a, lo, hi));
  }
  return part;
}

std::vector<mx::array> RowShards::sum(const std::vector<mx::array>& batch, int shards,
                                      const ShardFn& fn, bool paced) {
  mx::eval(batch);
  if (!workers_ || workers_->size() != shards) workers_ = std::make_unique<StreamWorkers>(shards);
  std::vector<std::vector<mx::array>> outputs(shards);
  {
    kernels::cpu::ScopedThreadLimit limit(kernels::cpu::num_threads() / shards, shards);
    std::optional<kernels::cpu::ScopedPacedEval> pacing;  // Note [Pacing the host thread]
    if (paced) pacing.emplace();
    workers_->run([&](int i) {
      std::vector<mx::array> out = fn(shard_rows(batch, i, shards), i);
      mx::eval(out);
      outputs[i] = std::move(out);
    });
  }
  std::vector<mx::array> sums = outputs[0];
  for (int i = 1; i < shards; ++i) {
    FT_ASSERT(outputs[i].size() == sums.size());
    for (size_t j = 0; j < sums.size(); ++j) sums[j] = sums[j] + outputs[i][j];
  }
  return sums;
}

}  // namespace ft
