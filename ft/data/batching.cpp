#include "ft/data/batching.h"

#include <algorithm>
#include <numeric>

#include "ft/core/error.h"
#include "ft/data/packing.h"

namespace ft::data {
namespace {

uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

int64_t round_up(int64_t n, int64_t m) {
  return (n + m - 1) / m * m;
}

// Note [Padded lengths on a ladder]
// Every new batch shape is traced and compiled again (a second or so of host time for a
// 1B model), and on a GPU the step waits for it: padded batches of lengths 50 to 2000 in
// multiples of 8 gave a new shape nearly every step, 4.7k tokens/s against 60k for one
// shape (H100, Llama-3.2-1B shape, batch 4). So a padded length is a multiple of the
// largest power of two at most an eighth of it (and of pad_multiple): at most eight
// lengths per octave (56, 64, 72, ..., 960, 1024, 1152, ...), each at most 1/8 longer
// than its longest row. Packed rows take the same ladder: nearly full rows of one
// max_seq_length fall on one or two lengths.
int64_t padded_length(int64_t n, int64_t pad_multiple) {
  int64_t step = 1;
  while (step * 2 * 8 <= n) step *= 2;
  return round_up(n, std::max(step, pad_multiple));
}

}  // namespace

std::vector<int64_t> permutation(int64_t n, uint64_t seed) {
  std::vector<int64_t> p(size_t(std::max<int64_t>(n, 0)));
  std::iota(p.begin(), p.end(), 0);
  uint64_t state = seed;
  for (int64_t i = n - 1; i > 0; --i) {
    // Rejection keeps the draw unbiased.
    uint64_t bound = uint64_t(i + 1);
    uint64_t limit = UINT64_MAX - UINT64_MAX % bound;
    uint64_t r;
    do r = splitmix64(state);
    while (r >= limit);
    std::swap(p[size_t(i)], p[size_t(r % bound)]);
  }
  return p;
}

mlx::core::array to_mx(const std::vector<int32_t>& buffer, const Batch& batch) {
  FT_ASSERT(buffer.size() == size_t(batch.rows) * size_t(batch.length));
  return mlx::core::array(buffer.begin(), {batch.rows, batch.length}, mlx::core::int32);
}

Batcher::Batcher(const TokenizedData& data, BatchOptions options) : data_(data), options_(options) {
  FT_CHECK(options_.batch_size > 0, "data", "batch_size must be positive, got ",
           options_.batch_size);
  FT_CHECK(options_.pad_multiple > 0, "data", "pad_multiple must be positive");
  FT_CHECK(!options_.pack || options_.max_seq_length > 1, "data",
           "packing needs max_seq_length > 1, got ", options_.max_seq_length);
  FT_CHECK(data_.size() > 0, "data", "no samples to batch");
}

// Each epoch draws its own order from (seed, epoch). Unpacked: shuffle, then a stable
// sort by padded length so rows of one batch need little padding (samples of equal
// bucket still change places every epoch), then the batch order is shuffled.
// Packed: shuffle, fill rows first-fit, group rows into batches.
std::vector<std::vector<std::vector<int64_t>>> Batcher::plan(int64_t epoch) const {
  int64_t n = int64_t(data_.size());
  uint64_t seed = options_.seed * 0x100000001B3ull + uint64_t(epoch) * 0x9E3779B97F4A7C15ull;
  std::vector<int64_t> order(size_t(n), 0);
  if (options_.shuffle) {
    order = permutation(n, seed);
  } else {
    std::iota(order.begin(), order.end(), 0);
  }
  std::vector<std::vector<int64_t>> rows;
  if (options_.pack) {
    std::vector<int64_t> lengths;
    for (int64_t i : order) lengths.push_back(std::max<int64_t>(data_.length(size_t(i)) - 1, 1));
    for (auto& row : pack_rows(lengths, options_.max_seq_length)) {
      for (auto& k : row) k = order[size_t(k)];
      rows.push_back(std::move(row));
    }
  } else {
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
      return padded_length(data_.length(size_t(a)), options_.pad_multiple) <
             padded_length(data_.length(size_t(b)), options_.pad_multiple);
    });
    for (int64_t i : order) rows.push_back({i});
  }
  std::vector<std::vector<std::vector<int64_t>>> batches;
  for (size_t r = 0; r < rows.size(); r += size_t(options_.batch_size)) {
    size_t end = std::min(rows.size(), r + size_t(options_.batch_size));
    batches.emplace_back(rows.begin() + long(r), rows.begin() + long(end));
  }
  if (options_.shuffle) {
    std::vector<int64_t> p = permutation(int64_t(batches.size()), seed ^ 0xD1B54A32D192ED03ull);
    std::vector<std::vector<std::vector<int64_t>>> shuffled;
    for (int64_t k : p) shuffled.push_back(std::move(batches[size_t(k)]));
    batches = std::move(shuffled);
  }
  return batches;
}

const Batcher::Plan& Batcher::cached_plan(int64_t epoch) const {
  if (epoch != cached_epoch_) {
    cached_ = plan(epoch);
    cached_epoch_ = epoch;
  }
  return cached_;
}

Position Batcher::next(Position at) const {
  if (at.index + 1 >= batches_per_epoch(at.epoch)) return {at.epoch + 1, 0};
  return {at.epoch, at.index + 1};
}

Batch Batcher::batch(Position at) const {
  const Plan& batches = cached_plan(at.epoch);
  FT_CHECK(at.index >= 0 && at.index < int64_t(batches.size()), "data", "batch index ", at.index,
           " out of range (", batches.size(), " batches per epoch)");
  const auto& rows = batches[size_t(at.index)];
  Batch b;
  b.rows = int(rows.size());
  int64_t longest = 1;
  for (const auto& row : rows) {
    int64_t used = 0;
    for (int64_t i : row) used += std::max<int64_t>(data_.length(size_t(i)) - 1, 0);
    longest = std::max(longest, used);
  }
  b.length = int(padded_length(longest, options_.pad_multiple));
  size_t cells = size_t(b.rows) * size_t(b.length);
  b.inputs.assign(cells, options_.pad_id);
  b.targets.assign(cells, kIgnoreIndex);
  b.segment_ids.assign(cells, 0);
  b.positions.assign(cells, 0);
  for (size_t r = 0; r < rows.size(); ++r) {
    size_t col = 0;
    int32_t segment = 0;
    for (int64_t i : rows[r]) {
      b.samples.push_back(i);
      auto ids = data_.ids(size_t(i));
      auto mask = data_.mask(size_t(i));
      ++segment;
      // Inputs are tokens 0..n-2, targets tokens 1..n-1: within a sample only.
      for (size_t t = 0; t + 1 < ids.size(); ++t, ++col) {
        size_t cell = r * size_t(b.length) + col;
        b.inputs[cell] = ids[t];
        if (mask[t + 1]) {
          b.targets[cell] = ids[t + 1];
          ++b.trained_tokens;
        }
        b.segment_ids[cell] = segment;
        b.positions[cell] = int32_t(t);
      }
    }
  }
  return b;
}

}  // namespace ft::data
