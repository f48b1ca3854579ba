// Batches for training: length-bucketed padded batches, or packed rows holding several
// samples each with per-sample segment ids and positions. The order is a pure function
// of (seed, epoch), so a run resumes from a saved Position.
#pragma once

#include <cstdint>
#include <vector>

#include <mlx/array.h>

#include "ft/data/tokenized.h"

namespace ft::data {

inline constexpr int32_t kIgnoreIndex = -100;

// Plain row-major buffers; to_mx turns one into an mx::array.
struct Batch {
  int rows = 0;
  int length = 0;                // a multiple of pad_multiple (Note [Padded lengths on a ladder])
  std::vector<int32_t> inputs;   // (rows, length) token ids, pad_id past the end
  std::vector<int32_t> targets;  // (rows, length) next token, kIgnoreIndex: no loss
  std::vector<int32_t> segment_ids;  // (rows, length) 1, 2, ... per sample; 0: padding
  std::vector<int32_t> positions;    // (rows, length) position within its sample
  std::vector<int64_t> samples;      // indices of the samples in the batch
  int64_t trained_tokens = 0;        // targets that are not kIgnoreIndex
};

// A (rows, length) int32 array of one of a batch's buffers.
mlx::core::array to_mx(const std::vector<int32_t>& buffer, const Batch& batch);

struct BatchOptions {
  int batch_size = 4;         // rows per batch
  int max_seq_length = 2048;  // packed row length (inputs); samples are cut to it before
  bool pack = false;
  int pad_multiple = 8;
  int32_t pad_id = 0;
  uint64_t seed = 0;
  bool shuffle = true;
};

struct Position {
  int64_t epoch = 0;
  int64_t index = 0;  // batch within the epoch
  bool operator==(const Position&) const = default;
};

// Not thread-safe: it keeps the plan of the last epoch asked for.
class Batcher {
 public:
  // data must outlive the Batcher.
  Batcher(const TokenizedData& data, BatchOptions options);

  // Batches in an epoch: the same every epoch unless packing, where how many rows the
  // samples fill depends on their order.
  int64_t batches_per_epoch(int64_t epoch = 0) const { return int64_t(cached_plan(epoch).size()); }
  // The batch at a position: a pure function of (data, options, position).
  Batch batch(Position at) const;
  // The position after `at`, moving to the next epoch past the last batch.
  Position next(Position at) const;

  // The sample indices of each batch row of an epoch: plan(e)[b][r] lists row r of batch b.
  std::vector<std::vector<std::vector<int64_t>>> plan(int64_t epoch) const;

 private:
  using Plan = std::vector<std::vector<std::vector<int64_t>>>;
  const Plan& cached_plan(int64_t epoch) const;

  const TokenizedData& data_;
  BatchOptions options_;
  mutable int64_t cached_epoch_ = -1;
  mutable Plan cached_;
};

// A deterministic permutation of 0..n-1 (Fisher-Yates on a splitmix64 stream), the same
// on every platform.
std::vector<int64_t> permutation(int64_t n, uint64_t seed);

}  // namespace ft::data
