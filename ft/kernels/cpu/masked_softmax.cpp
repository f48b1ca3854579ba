#include "ft/kernels/cpu/masked_softmax.h"

#include <algorithm>
#include <limits>
#include <memory>
#include <type_traits>
#include <vector>

#include <mlx/allocator.h>            // defines: mx::allocator::malloc
#include <mlx/backend/cpu/encoder.h>  // defines: mx::cpu::get_command_encoder
#include <mlx/ops.h>
#include <mlx/primitives.h>
#include <mlx/transforms.h>  // defines: mx::custom_vjp
#include <mlx/utils.h>       // defines: mx::finfo

#include "ft/core/error.h"
#include "ft/kernels/cpu/pacing.h"
#include "ft/kernels/cpu/parallel.h"
#include "ft/kernels/cpu/storage.h"
#include "ft/kernels/cpu/vec_math.h"

namespace ft::kernels::cpu {
namespace {

constexpr const char* kPlace = "masked_softmax";
// Elements per thread below which a thread costs more than it saves.
constexpr int64_t kMinPerThread = 1 << 14;
// Partial maxima and sums per row: a fixed number of lanes the compiler maps onto vector
// registers, combined in a fixed order, so that a row's result does not depend on the
// instruction set or the thread split.

// What one call computes. queries == 0: no causal pattern.
struct Job {
  int64_t keys;  // K, the row length
  int queries;
  int offset;
};

// Keys row `row` keeps: all, or those up to offset + (row mod queries).
inline int64_t kept_keys(const Job& job, int64_t row) {
  if (job.queries == 0) return job.keys;
  return std::min<int64_t>(job.keys, job.offset + row % job.queries + 1);
}

// Writes e[j] = exp(x[j] - max) for j < n and returns their sum.
template <class S>
inline float exp_and_sum(const typename S::type* x, float max, float* e, int64_t n) {
  float lanes[kLanes] = {};
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes)
    for (int k = 0; k < kLanes; ++k) {
      e[j + k] = exp_approx(S::load(x[j + k]) - max);
      lanes[k] += e[j + k];
    }
  for (; j < n; ++j) {
    e[j] = exp_approx(S::load(x[j]) - max);
    lanes[0] += e[j];
  }
  float result = lanes[0];
  for (int k = 1; k < kLanes; ++k) result += lanes[k];
  return result;
}

template <class S>
inline float dot(const typename S::type* a, const typename S::type* b, int64_t n) {
  float lanes[kLanes] = {};
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes)
    for (int k = 0; k < kLanes; ++k) lanes[k] += S::load(a[j + k]) * S::load(b[j + k]);
  for (; j < n; ++j) lanes[0] += S::load(a[j]) * S::load(b[j]);
  float result = lanes[0];
  for (int k = 1; k < kLanes; ++k) result += lanes[k];
  return result;
}

// Rows [begin, end) of p = softmax(x); scratch holds K floats (float32 storage writes the
// exponentials straight into the output).
template <class S>
FT_CPU_CLONES void forward_rows(const Job& job, const typename S::type* x, typename S::type* p,
                                int64_t begin, int64_t end, float* scratch) {
  const int64_t keys = job.keys;
  for (int64_t row = begin; row < end; ++row) {
    const auto* xr = x + row * keys;
    auto* pr = p + row * keys;
    const int64_t n = kept_keys(job, row);
    float* e = std::is_same_v<S, F32Storage> ? reinterpret_cast<float*>(pr) : scratch;
    const float max = row_max<S>(xr, n);
    const float inverse = 1.0f / exp_and_sum<S>(xr, max, e, n);
    for (int64_t j = 0; j < n; ++j) pr[j] = S::store(e[j] * inverse);
    for (int64_t j = n; j < keys; ++j) pr[j] = S::store(0.0f);
  }
}

// Rows [begin, end) of dx = p * (g - sum(p * g)).
template <class S>
FT_CPU_CLONES void backward_rows(const Job& job, const typename S::type* p,
                                 const typename S::type* g, typename S::type* dx, int64_t begin,
                                 int64_t end) {
  const int64_t keys = job.keys;
  for (int64_t row = begin; row < end; ++row) {
    const auto* pr = p + row * keys;
    const auto* gr = g + row * keys;
    auto* dr = dx + row * keys;
    const int64_t n = kept_keys(job, row);
    const float pg = dot<S>(pr, gr, n);
    for (int64_t j = 0; j < n; ++j) dr[j] = S::store(S::load(pr[j]) * (S::load(gr[j]) - pg));
    for (int64_t j = n; j < keys; ++j) dr[j] = S::store(0.0f);
  }
}

// Inputs {scores} (forward) or {p, cotangent} (backward), row-contiguous and of one dtype;
// one output of the same shape and dtype.
class CpuMaskedSoftmax : public mx::Primitive {
 public:
  CpuMaskedSoftmax(mx::Stream stream, Job job, bool backward)
      : mx::Primitive(stream), job_(job), backward_(backward) {}

  void eval_cpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) override {
    auto& out = outputs[0];
    out.set_data(mx::allocator::malloc(out.nbytes()));
    auto& encoder = mx::cpu::get_command_encoder(stream());
    std::vector<const void*> in;
    for (const auto& a : inputs) {
      encoder.set_input_array(a);
      in.push_back(a.data<void>());
    }
    encoder.set_output_array(out);
    const int64_t rows = job_.keys > 0 ? static_cast<int64_t>(out.size()) / job_.keys : 0;
    encoder.dispatch([in, result = out.data<void>(), rows, dtype = out.dtype(), job = job_,
                      backward = backward_] {
      const int64_t min_rows = std::max<int64_t>(1, kMinPerThread / std::max<int64_t>(1, job.keys));
      parallel_for(rows, min_rows, [&](int64_t begin, int64_t end) {
        dispatch_storage(dtype, [&](auto storage) {
          using S = decltype(storage);
          using T = typename S::type;
          if (backward) {
            backward_rows<S>(job, static_cast<const T*>(in[0]), static_cast<const T*>(in[1]),
                             static_cast<T*>(result), begin, end);
          } else {
            std::vector<float> scratch(std::is_same_v<S, F32Storage> ? 0 : job.keys);
            forward_rows<S>(job, static_cast<const T*>(in[0]), static_cast<T*>(result), begin, end,
                            scratch.data());
          }
        });
      });
    });
    pace(encoder);
  }

  void eval_gpu(const std::vector<mx::array>&, std::vector<mx::array>&) override {
    throw Error(kPlace, "the CPU kernel ran on a GPU stream");
  }

  const char* name() const override {
    return backward_ ? "CpuMaskedSoftmaxVJP" : "CpuMaskedSoftmax";
  }

  bool is_equivalent(const mx::Primitive& other) const override {
    const auto& o = static_cast<const CpuMaskedSoftmax&>(other);
    return backward_ == o.backward_ && job_.keys == o.job_.keys && job_.queries == o.job_.queries &&
           job_.offset == o.job_.offset;
  }

  std::vector<mx::Shape> output_shapes(const std::vector<mx::array>& inputs) override {
    return {inputs[0].shape()};
  }

 private:
  Job job_;
  bool backward_;
};

mx::array run(std::vector<mx::array> inputs, const Job& job, bool backward, mx::Stream s) {
  for (auto& a : inputs) a = mx::contiguous(a, false, s);
  return mx::array(inputs[0].shape(), inputs[0].dtype(),
                   std::make_shared<CpuMaskedSoftmax>(s, job, backward), inputs);
}

}  // namespace

bool masked_softmax_supported(mx::Dtype dtype, mx::Stream s) {
  return s.device.type == mx::Device::cpu &&
         (dtype == mx::float32 || dtype == mx::bfloat16 || dtype == mx::float16);
}

mx::array masked_softmax(const mx::array& scores, std::optional<CausalMask> causal,
                         const std::optional<mx::array>& mask, mx::Stream s) {
  FT_CHECK(masked_softmax_supported(scores.dtype(), s), kPlace,
           "takes float32, bfloat16 or float16 scores on a CPU stream, got ", scores.dtype());
  FT_CHECK(scores.ndim() >= 2, kPlace, "scores must have at least 2 dimensions, got ",
           scores.ndim());
  Job job{scores.shape(-1), 0, 0};
  if (causal) {
    FT_CHECK(causal->queries > 0 && causal->offset >= 0 && scores.shape(-2) % causal->queries == 0,
             kPlace, "the causal pattern needs queries > 0 dividing ", scores.shape(-2),
             " and offset >= 0, got queries ", causal->queries, ", offset ", causal->offset);
    job.queries = causal->queries;
    job.offset = causal->offset;
  }
  mx::array x = scores;
  if (mask) {
    FT_CHECK(mx::broadcast_shapes(mask->shape(), scores.shape()) == scores.shape(), kPlace,
             "the mask ", mask->shape(), " does not broadcast to the scores ", scores.shape());
    if (mask->dtype() == mx::bool_)
      x = mx::where(*mask, x, mx::array(mx::finfo(x.dtype()).min, x.dtype()), s);
    else
      x = mx::add(x, mx::astype(*mask, x.dtype(), s), s);
  }
  if (x.size() == 0) return x;
  auto fn = mx::custom_vjp(
      [job, s](const std::vector<mx::array>& in) -> std::vector<mx::array> {
        return {run({in[0]}, job, false, s)};
      },
      [job, s](const std::vector<mx::array>&, const std::vector<mx::array>& cotangents,
               const std::vector<mx::array>& outputs) -> std::vector<mx::array> {
        const auto& p = outputs[0];
        auto g = mx::broadcast_to(mx::astype(cotangents[0], p.dtype(), s), p.shape(), s);
        return {run({p, g}, job, true, s)};
      });
  return fn({x})[0];
}

}  // namespace ft::kernels::cpu
