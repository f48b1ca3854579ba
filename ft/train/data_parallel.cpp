#include "ft/train/data_parallel.h"

#include <csignal>
#include <cstdlib>

#include <mlx/distributed/ops.h>  // defines: all_sum, all_gather
#include <mlx/ops.h>
#include <mlx/transforms.h>  // defines: eval

#include "ft/core/error.h"
#include "ft/core/hash.h"  // defines: fnv1a

namespace ft::train {

// Note [Data parallelism]
// A run of N ranks trains on the global batches one process would read: every rank reads
// the same batch (the same data order, the same padding) and keeps its share of the rows
// (DataParallel::rows). The step adds each rank's loss sums, token counts and gradient sums
// of its micro-batches, then sums them across ranks in one all-reduce, before it divides by
// the token count, clips and updates (TrainStep::run). So every rank holds the gradients
// of the global batch and makes the same update, and the loss is the one-process loss of
// that batch up to the order of the additions. Evaluation splits the validation batches
// over the ranks and sums their loss, token and accuracy sums the same way. Rank 0 alone
// writes checkpoints, metrics and outputs; the others wait for it at a barrier. The data
// position in a checkpoint is every rank's, since all read the same batches, so a run
// resumes with another number of ranks on the same data order.

DataParallel DataParallel::from_environment() {
  DataParallel p;
  const char* backend = std::getenv(kBackendVariable);
  if (backend == nullptr || *backend == '\0') return p;
  const char* rank = std::getenv("MLX_RANK");
  const std::string who = std::string("rank ") + (rank ? rank : "?");
  FT_CHECK(mx::distributed::is_available(backend), "distributed", who, ": the ", backend,
           " backend is not available in this MLX build");
  // A rank whose peer is gone gets the backend's error, not SIGPIPE's silent death.
  signal(SIGPIPE, SIG_IGN);
  try {
    p.group_ = mx::distributed::init(/*strict=*/true, backend);
  } catch (const std::exception& e) {
    throw Error("distributed", who + ": cannot join the " + backend + " group: " + e.what());
  }
  p.backend_ = backend;
  return p;
}

std::vector<mx::array> DataParallel::sum(const std::vector<mx::array>& arrays) const {
  if (alone() || arrays.empty()) return arrays;
  std::vector<mx::array> flat;
  for (const mx::array& a : arrays) flat.push_back(mx::flatten(mx::astype(a, mx::float32)));
  mx::array total = mx::distributed::all_sum(mx::concatenate(flat, 0), *group_);
  std::vector<mx::array> out;
  int offset = 0;
  for (const mx::array& a : arrays) {
    const int n = static_cast<int>(a.size());
    out.push_back(mx::reshape(mx::slice(total, {offset}, {offset + n}), a.shape()));
    offset += n;
  }
  return out;
}

void DataParallel::barrier() const {
  if (alone()) return;
  mx::array done = mx::distributed::all_sum(mx::array(1.0f), *group_);
  mx::eval(done);
}

bool DataParallel::any(bool flag) const {
  if (alone()) return flag;
  mx::array count = mx::distributed::all_sum(mx::array(flag ? 1.0f : 0.0f), *group_);
  mx::eval(count);
  return count.item<float>() > 0;
}

void DataParallel::check_same(const std::string& text, const std::string& what) const {
  if (alone()) return;
  const uint64_t h = fnv1a(text);
  // Four 16-bit pieces, exact in any integer type the backends sum or gather.
  std::vector<int32_t> pieces;
  for (int i = 0; i < 4; ++i) pieces.push_back(static_cast<int32_t>((h >> (16 * i)) & 0xffff));
  mx::array all = mx::distributed::all_gather(mx::array(pieces.data(), {1, 4}, mx::int32),
                                              *group_);  // (size, 4)
  mx::eval(all);
  const int32_t* values = all.data<int32_t>();
  for (int r = 1; r < size(); ++r)
    for (int i = 0; i < 4; ++i)
      FT_CHECK(values[4 * r + i] == values[i], "distributed", "rank ", r, " was started with ",
               what, " other than rank 0's: every rank needs the same command");
}

std::vector<mx::array> DataParallel::rows(const std::vector<mx::array>& batch) const {
  if (alone()) return batch;
  std::vector<mx::array> out;
  for (const mx::array& a : batch) {
    const int n = a.shape(0);
    const int begin = static_cast<int>(int64_t(n) * rank() / size());
    const int end = static_cast<int>(int64_t(n) * (rank() + 1) / size());
    FT_CHECK(end > begin, "distributed", "a batch of ", n, " rows leaves rank ", rank(),
             " none: the batch size must be at least the number of ranks (", size(), ")");
    mx::Shape start(a.ndim(), 0), stop = a.shape();
    start[0] = begin;
    stop[0] = end;
    out.push_back(mx::slice(a, start, stop));
  }
  return out;
}

}  // namespace ft::train
