// Peak memory and time of the output projection + cross-entropy, forward and backward
// (gradients w.r.t. hidden and weight): the composite (full logits) against the chunked one.
//
//   bench_linear_cross_entropy                        a few default sizes, f32
//   bench_linear_cross_entropy N H V [chunk] [dtype]  one size; dtype f32 | bf16
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <mlx/memory.h>
#include <mlx/ops.h>
#include <mlx/random.h>
#include <mlx/transforms.h>

#include "ft/core/device.h"
#include "ft/kernels/linear_cross_entropy.h"

namespace mx = mlx::core;
using ft::kernels::LinearCrossEntropyOptions;

namespace {

struct Size {
  int tokens, hidden, vocab, chunk;
  mx::Dtype dtype;
};

using LossFn = mx::array (*)(const mx::array&, const mx::array&, const mx::array&,
                             const LinearCrossEntropyOptions&);

struct Result {
  double peak_mib;  // peak minus the memory already held by the inputs
  double ms;
};

Result measure(LossFn fn, const mx::array& hidden, const mx::array& weight,
               const mx::array& targets, const LinearCrossEntropyOptions& options) {
  auto step = mx::value_and_grad(
      [&](const std::vector<mx::array>& p) {
        return std::vector<mx::array>{fn(p[0], p[1], targets, options)};
      },
      std::vector<int>{0, 1});
  double best_ms = 1e30, peak = 0;
  for (int rep = 0; rep < 3; ++rep) {
    mx::clear_cache();
    size_t base = mx::get_active_memory();
    mx::reset_peak_memory();
    auto start = std::chrono::steady_clock::now();
    auto [values, grads] = step({hidden, weight});
    mx::eval({values[0], grads[0], grads[1]});
    auto stop = std::chrono::steady_clock::now();
    best_ms = std::min(best_ms, std::chrono::duration<double, std::milli>(stop - start).count());
    peak = static_cast<double>(mx::get_peak_memory() - base) / (1 << 20);
    if (best_ms > 2000) break;  // slow enough that one run is a fair measure
  }
  return {peak, best_ms};
}

void run(const Size& size) {
  auto keys = mx::random::split(mx::random::key(0), 3);
  auto hidden = mx::astype(
      mx::random::normal({size.tokens, size.hidden}, mx::float32, 0, 1, mx::take(keys, 0, 0)),
      size.dtype);
  auto weight = mx::astype(mx::multiply(mx::random::normal({size.vocab, size.hidden}, mx::float32,
                                                           0, 1, mx::take(keys, 1, 0)),
                                        mx::array(1.0f / std::sqrt(float(size.hidden)))),
                           size.dtype);
  auto targets = mx::random::randint(0, size.vocab, {size.tokens}, mx::int32, mx::take(keys, 2, 0));
  mx::eval({hidden, weight, targets});
  LinearCrossEntropyOptions options;
  options.chunk_size = size.chunk;
  options.reduction = ft::train::Reduction::sum;
  int chunk = ft::kernels::linear_cross_entropy_chunk_size(
      size.tokens, size.vocab, size.chunk, 1,
      mx::default_device() == mx::Device::gpu ? ft::backend_name() : std::string("cpu"));
  double logits_mib = double(size.tokens) * size.vocab * 4 / (1 << 20);
  auto composite =
      measure(ft::kernels::linear_cross_entropy_composite, hidden, weight, targets, options);
  auto chunked = measure(ft::kernels::linear_cross_entropy, hidden, weight, targets, options);
  std::printf(
      "N=%-6d H=%-5d V=%-6d %-4s chunk=%-5d f32 logits %7.1f MiB | composite %8.1f MiB %9.1f ms"
      " | chunked %8.1f MiB %9.1f ms\n",
      size.tokens, size.hidden, size.vocab, size.dtype == mx::bfloat16 ? "bf16" : "f32", chunk,
      logits_mib, composite.peak_mib, composite.ms, chunked.peak_mib, chunked.ms);
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<Size> sizes;
  if (argc >= 4) {
    mx::Dtype dtype = (argc >= 6 && std::string(argv[5]) == "bf16") ? mx::bfloat16 : mx::float32;
    sizes.push_back({std::atoi(argv[1]), std::atoi(argv[2]), std::atoi(argv[3]),
                     argc >= 5 ? std::atoi(argv[4]) : 0, dtype});
  } else {
    sizes = {{1024, 512, 32000, 0, mx::float32},
             {4096, 512, 32000, 0, mx::float32},
             {4096, 512, 32000, 1024, mx::float32},
             {4096, 512, 32000, 0, mx::bfloat16},
             {2048, 1024, 128256, 0, mx::float32}};
  }
  std::printf("peak: memory above the inputs during forward + backward; time: best of 3\n");
  for (const auto& size : sizes) run(size);
  return 0;
}
