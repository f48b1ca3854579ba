#include "ft/kernels/cpu/softmax_cross_entropy.h"

#include <cmath>
#include <future>
#include <limits>
#include <type_traits>
#include <vector>

#include <mlx/allocator.h>            // defines: mx::allocator::malloc
#include <mlx/backend/cpu/encoder.h>  // defines: mx::cpu::get_command_encoder
#include <mlx/ops.h>
#include <mlx/primitives.h>

#include "ft/core/error.h"
#include "ft/kernels/cpu/parallel.h"
#include "ft/kernels/cpu/storage.h"
#include "ft/kernels/cpu/vec_math.h"

namespace ft::kernels::cpu {
namespace {

constexpr const char* kPlace = "softmax_cross_entropy";
// Partial sums and maxima per row: a fixed number of lanes the compiler maps onto vector
// registers, combined in a fixed order (a plain float reduction would not vectorise without
// reassociation, and would change with the instruction set).

struct RowsJob {
  const void* logits;      // (N, V) row-contiguous
  const int32_t* targets;  // (N,)
  float* loss;             // (N,)
  void* dlogits;           // (N, V) or null
  int64_t vocab;
  int ignore_index;
  float smoothing;
};

// The sum of a row, in kLanes partial results combined in a fixed order.
template <class S>
inline float row_sum(const typename S::type* x, int64_t n) {
  float lanes[kLanes] = {};
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes)
    for (int k = 0; k < kLanes; ++k) lanes[k] += S::load(x[j + k]);
  for (; j < n; ++j) lanes[0] += S::load(x[j]);
  float result = lanes[0];
  for (int k = 1; k < kLanes; ++k) result += lanes[k];
  return result;
}

// Rows [begin, end) of the job; scratch holds V floats (the row's exponentials).
template <class S>
FT_CPU_CLONES void cross_entropy_rows(const RowsJob& job, int64_t begin, int64_t end,
                                      float* scratch) {
  using T = typename S::type;
  const int64_t vocab = job.vocab;
  const float s = job.smoothing;
  for (int64_t row = begin; row < end; ++row) {
    const T* z = static_cast<const T*>(job.logits) + row * vocab;
    T* dz = job.dlogits ? static_cast<T*>(job.dlogits) + row * vocab : nullptr;
    const int32_t target = job.targets[row];
    if (target == job.ignore_index) {
      job.loss[row] = 0.0f;
      if (dz)
        for (int64_t j = 0; j < vocab; ++j) dz[j] = S::store(0.0f);
      continue;
    }

    // Pass 1: the row's maximum, and its sum where label smoothing needs it.
    const float max = row_max<S>(z, vocab);
    const float sum_z = s > 0.0f ? row_sum<S>(z, vocab) : 0.0f;

    // Pass 2: e = exp(z - max), kept, and its sum. A plain map loop and a lane sum: the
    // exp vectorises on every x86 level only in a loop of its own.
    float* e = (dz && std::is_same_v<T, float>) ? reinterpret_cast<float*>(dz) : scratch;
    for (int64_t j = 0; j < vocab; ++j) e[j] = exp_approx(S::load(z[j]) - max);
    const float sum_e = row_sum<F32Storage>(e, vocab);

    const bool in_range = target >= 0 && target < vocab;
    const float lse = std::log(sum_e) + max;
    const float target_logit = in_range ? S::load(z[target]) : 0.0f;
    job.loss[row] = in_range ? lse - (1.0f - s) * target_logit - s * (sum_z / vocab)
                             : std::numeric_limits<float>::quiet_NaN();

    // Pass 3: the gradient, softmax - (1 - s) onehot - s / V.
    if (!dz) continue;
    const float inv_sum = 1.0f / sum_e;
    const float uniform = s / vocab;
    const float e_target = in_range ? e[target] : 0.0f;
    for (int64_t j = 0; j < vocab; ++j) dz[j] = S::store(e[j] * inv_sum - uniform);
    if (in_range) dz[target] = S::store(e_target * inv_sum - uniform - (1.0f - s));
  }
}

class SoftmaxCrossEntropy : public CrossEntropyPrimitive {
 public:
  SoftmaxCrossEntropy(mx::Stream stream, const SoftmaxCrossEntropyOptions& options)
      : CrossEntropyPrimitive(stream, options, kPlace) {}

  void eval_cpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) override {
    const mx::array& logits = inputs[0];   // (N, V) row-contiguous
    const mx::array& targets = inputs[1];  // (N,) int32 row-contiguous
    auto& encoder = mx::cpu::get_command_encoder(stream());
    // MLX's eval runs ahead of the stream's worker by up to about a hundred dispatches,
    // allocating each op's output as it goes; for linear_cross_entropy's chunks (a handful of
    // ops each) that is every chunk's logits and gradient alive at once. Waiting here for the
    // work already dispatched (this chunk's logits) bounds that to the chunk at hand, and
    // lets its buffers come from those the previous chunks freed. The worker records a
    // failing task's error and goes on, so the marker below always runs.
    std::promise<void> drained;
    encoder.dispatch([&drained] { drained.set_value(); });
    drained.get_future().wait();
    for (auto& out : outputs) out.set_data(mx::allocator::malloc(out.nbytes()));
    RowsJob job{logits.data<void>(),      targets.data<int32_t>(),
                outputs[0].data<float>(), outputs.size() > 1 ? outputs[1].data<void>() : nullptr,
                logits.shape(1),          options_.ignore_index,
                options_.label_smoothing};
    const int64_t rows = logits.shape(0);
    const mx::Dtype dtype = logits.dtype();
    encoder.set_input_array(logits);
    encoder.set_input_array(targets);
    for (auto& out : outputs) encoder.set_output_array(out);
    encoder.dispatch([job, rows, dtype] {
      // Rows of a few thousand logits each: two rows per thread is already worth a thread.
      parallel_for(rows, 2, [&](int64_t begin, int64_t end) {
        std::vector<float> scratch(job.vocab);
        dispatch_storage(dtype, [&](auto storage) {
          cross_entropy_rows<decltype(storage)>(job, begin, end, scratch.data());
        });
      });
    });
  }

  const char* name() const override { return "SoftmaxCrossEntropy"; }
};

}  // namespace

bool softmax_cross_entropy_supported(mx::Dtype dtype, mx::StreamOrDevice s) {
  return mx::to_stream(s).device.type == mx::Device::cpu &&
         (dtype == mx::float32 || dtype == mx::bfloat16 || dtype == mx::float16);
}

std::vector<mx::array> softmax_cross_entropy(const mx::array& logits, const mx::array& targets,
                                             const SoftmaxCrossEntropyOptions& options,
                                             mx::StreamOrDevice s) {
  const auto stream = mx::to_stream(s);
  FT_CHECK(logits.ndim() == 2, kPlace, "logits must be (rows, vocab), got shape ", logits.shape());
  FT_CHECK(targets.ndim() == 1 && targets.shape(0) == logits.shape(0), kPlace,
           "targets have shape ", targets.shape(), " but logits have ", logits.shape(0), " rows");
  FT_CHECK(mx::issubdtype(targets.dtype(), mx::integer), kPlace,
           "targets must be integer token ids, got ", targets.dtype());
  FT_CHECK(softmax_cross_entropy_supported(logits.dtype(), stream), kPlace,
           "takes float32, bfloat16 or float16 logits on a CPU stream, got ", logits.dtype(),
           " on ", stream.device);
  FT_CHECK(logits.shape(1) > 0, kPlace, "logits have no classes");
  FT_CHECK(options.label_smoothing >= 0.0f && options.label_smoothing <= 1.0f, kPlace,
           "label_smoothing must be in [0, 1], got ", options.label_smoothing);
  std::vector<mx::array> inputs{
      mx::contiguous(logits, false, stream),
      mx::contiguous(mx::astype(targets, mx::int32, stream), false, stream)};
  std::vector<mx::Shape> shapes{{logits.shape(0)}};
  std::vector<mx::Dtype> dtypes{mx::float32};
  if (options.with_grad) {
    shapes.push_back(logits.shape());
    dtypes.push_back(logits.dtype());
  }
  return mx::array::make_arrays(std::move(shapes), dtypes,
                                std::make_shared<SoftmaxCrossEntropy>(stream, options), inputs);
}

}  // namespace ft::kernels::cpu
