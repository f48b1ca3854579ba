#include "ft/kernels/linear_cross_entropy.h"

#include <algorithm>
#include <optional>
#include <vector>

#include <mlx/device.h>  // defines: default_device
#include <mlx/ops.h>
#include <mlx/transforms.h>
#include <mlx/utils.h>  // operator<< for Dtype in messages

#include "ft/core/device.h"  // defines: backend_name
#include "ft/core/error.h"
#include "ft/kernels/cpu/head_cross_entropy.h"
#include "ft/kernels/cpu/parallel.h"
#include "ft/kernels/cpu/softmax_cross_entropy.h"

namespace ft::kernels {

// Note [Chunk order in the lazy graph]
// Splitting the tokens into chunks saves nothing by itself: the chunks are independent
// subgraphs, and MLX's eval orders its tape breadth-first (up to a width limit), so it runs
// every chunk's matmul before any chunk's softmax and all (chunk, V) logits are alive at
// once. Measured (N=512, V=8000, 8 chunks of 64): the forward alone peaked at the full
// N x V logits. So each chunk's input is threaded through mx::depends on the previous
// chunk's result (the forward on its losses; the backward's first chunk on the forward's
// output, each later one on the previous dh and the running dW). Any schedule must then
// finish a chunk before starting the next, and the intermediates die chunk by chunk.
// MLX still allocates an op's output when it schedules the op, a little ahead of the
// workers, so a few chunks are alive at once (about five measured on the CPU): the peak
// is bounded by the chunk size, not by N.
// Evaluating each chunk inside the vjp would bound it more tightly, but eval is not
// allowed under mx::compile and the training step is compiled; mx::checkpoint only
// changes what is kept for the backward, not the order. The backward also uses
// mx::softmax (one primitive, which can write into z's buffer) rather than exp(z - lse).

// Note [Gradients in the forward on a GPU]
// The GPU path once recomputed each chunk's logits in the backward, as the first version of
// the CPU path did: a (N, H) x (H, V) product as large as the forward's (4.3 TFLOP of a
// Llama-3.2-1B step of 8k tokens, about 7 ms on an H100), and the logits went through a cast,
// a softmax, a one-hot scatter, a scale and a cast back, each a pass over (n, V) floats.
// So the GPU takes the CPU's route too: the forward computes each chunk's dz with
// loss_and_dlogits (one fused pass inside the compiled step) and the two products, and the
// backward scales them. It costs keeping dh (N, H) and, when the head trains, dW (V, H) in
// f32 from the forward to the backward.

// Note [Gradients in the forward on the CPU]
// On the CPU, recomputing each chunk's logits in the backward costs a matmul as large as the
// forward's (about an eighth of a small model's LoRA step), and the softmax another exp per
// logit. For a sum or mean the cotangent of the
// per-token losses is one scalar g for every token, so the gradients are g times
// dlogits @ W and dlogits^T @ h with dlogits = softmax - onehot, which the fused CPU kernel
// gives next to the loss in the same pass. So the custom_vjp's forward returns the summed
// loss and the unscaled gradients, chunk by chunk in the order of Note [Chunk order in the
// lazy graph]; its vjp multiplies them by g. A custom_vjp's outputs are evaluated together,
// so a forward without a backward would pay for them: options.gradients_in_forward turns
// this off for evaluation. Per-token losses (reduction none) have a cotangent per token
// that must scale dlogits before the matmuls, so they keep the recomputing backward.

namespace {

constexpr const char* kPlace = "linear_cross_entropy";

// Everything the forward and the backward of one call share.
struct Plan {
  int num_tokens;
  int vocab;
  int chunk;
  int ignore_index;
  float label_smoothing;
  bool weight_grad;
  bool cpu_kernel;          // the chunks' softmax cross-entropy runs as ft's CPU kernel
  bool head_kernel;         // the forward (and a frozen head's gradient) runs as
                            // cpu::head_cross_entropy, without chunks
  mx::Dtype compute_dtype;  // the matmuls: promoted dtype of hidden and weight
  mx::Dtype loss_dtype;     // logsumexp, softmax and the loss: f32 (f64 for f64)
};

// Checks the shapes and returns hidden as (N, H) and targets as (N,).
std::pair<mx::array, mx::array> flatten_inputs(const mx::array& hidden, const mx::array& weight,
                                               const mx::array& targets,
                                               const LinearCrossEntropyOptions& options) {
  FT_CHECK(hidden.ndim() >= 1, kPlace, "hidden must have a feature axis, got a scalar");
  FT_CHECK(weight.ndim() == 2, kPlace, "weight must be (vocab, hidden), got ", weight.ndim(), "-D");
  FT_CHECK(
      mx::issubdtype(hidden.dtype(), mx::floating) && mx::issubdtype(weight.dtype(), mx::floating),
      kPlace, "hidden and weight must be floating, got ", hidden.dtype(), " and ", weight.dtype());
  FT_CHECK(mx::issubdtype(targets.dtype(), mx::integer), kPlace,
           "targets must be integer token ids, got ", targets.dtype());
  FT_CHECK(hidden.shape(-1) == weight.shape(1), kPlace, "hidden has ", hidden.shape(-1),
           " features but weight (", weight.shape(0), ", ", weight.shape(1), ") expects ",
           weight.shape(1));
  mx::Shape token_shape(hidden.shape().begin(), hidden.shape().end() - 1);
  FT_CHECK(targets.shape() == token_shape, kPlace, "targets have ", targets.ndim(), " dims and ",
           targets.size(), " elements but hidden has ", hidden.ndim(),
           " dims and needs one target per row");
  FT_CHECK(options.label_smoothing >= 0.0f && options.label_smoothing <= 1.0f, kPlace,
           "label_smoothing must be in [0, 1], got ", options.label_smoothing);
  FT_CHECK(options.chunk_size >= 0, kPlace, "chunk_size must be >= 0, got ", options.chunk_size);
  FT_CHECK(targets.size() > 0, kPlace, "no tokens");
  int n = static_cast<int>(targets.size());
  return {mx::reshape(hidden, {n, hidden.shape(-1)}), mx::reshape(targets, {n})};
}

// One chunk's logits (rows, V) in the loss dtype; the matmul runs in the compute dtype.
mx::array chunk_logits(const mx::array& hidden_chunk, const mx::array& weight, const Plan& plan) {
  return mx::astype(mx::matmul(hidden_chunk, mx::transpose(weight)), plan.loss_dtype);
}

mx::array rows(const mx::array& a, int start, int stop) {
  mx::Shape lo(a.ndim(), 0), hi = a.shape();
  lo[0] = start;
  hi[0] = stop;
  return mx::slice(a, lo, hi);
}

// Per-token losses (N,) in the loss dtype, chunk by chunk.
mx::array forward(const mx::array& hidden, const mx::array& weight, const mx::array& targets,
                  const Plan& plan) {
  if (plan.head_kernel)
    return cpu::head_cross_entropy(hidden, weight, targets,
                                   {plan.ignore_index, plan.label_smoothing, false})[0];
  train::CrossEntropyOptions ce{plan.ignore_index, plan.label_smoothing, train::Reduction::none};
  std::vector<mx::array> losses;
  for (int start = 0; start < plan.num_tokens; start += plan.chunk) {
    int stop = std::min(start + plan.chunk, plan.num_tokens);
    // Note [Chunk order in the lazy graph]: this chunk waits for the previous one.
    auto h = losses.empty() ? rows(hidden, start, stop)
                            : mx::depends({rows(hidden, start, stop)}, {losses.back()})[0];
    auto t = rows(targets, start, stop);
    if (plan.cpu_kernel) {
      auto logits = mx::matmul(h, mx::transpose(weight));  // (rows, V), the kernel reads it
      losses.push_back(cpu::softmax_cross_entropy(
          logits, t, {plan.ignore_index, plan.label_smoothing, /*with_grad=*/false})[0]);
      continue;
    }
    auto logits = chunk_logits(h, weight, plan);  // (rows, V)
    losses.push_back(train::cross_entropy(logits, t, ce));
  }
  return losses.size() == 1 ? losses[0] : mx::concatenate(losses, 0);
}

// d loss_i / d z_ij = g_i * (softmax(z_i)_j - (1 - s) [j == t_i] - s / V), 0 for ignored i.
// Returns grad_hidden (N, H) and, if plan.weight_grad, grad_weight (V, H), in the loss dtype.
// See Note [Chunk order in the lazy graph].
std::pair<mx::array, std::optional<mx::array>> backward(const mx::array& hidden,
                                                        const mx::array& weight,
                                                        const mx::array& targets,
                                                        const mx::array& cotangent,       // (N,)
                                                        const mx::array& forward_output,  // (N,)
                                                        const Plan& plan) {
  const float s = plan.label_smoothing;
  const auto ldt = plan.loss_dtype;
  std::vector<mx::array> grad_hidden;
  std::optional<mx::array> grad_weight;             // (V, H), accumulated over chunks
  std::vector<mx::array> previous{forward_output};  // what the next chunk waits for
  for (int start = 0; start < plan.num_tokens; start += plan.chunk) {
    int stop = std::min(start + plan.chunk, plan.num_tokens);
    int n = stop - start;
    auto h = rows(hidden, start, stop);   // (n, H)
    auto t = rows(targets, start, stop);  // (n,)
    // Note [Chunk order in the lazy graph]: start after the forward and the previous chunk.
    auto valid = mx::not_equal(t, mx::array(plan.ignore_index, t.dtype()));
    std::optional<mx::array> dz;  // (n, V): softmax - (1 - s) onehot - s / V
    if (plan.cpu_kernel) {
      auto z = mx::matmul(mx::depends({h}, previous)[0], mx::transpose(weight));  // (n, V)
      dz = cpu::softmax_cross_entropy(z, t, {plan.ignore_index, s, /*with_grad=*/true})[1];
    } else {
      auto z = chunk_logits(mx::depends({h}, previous)[0], weight, plan);  // (n, V)
      dz = mx::softmax(z, -1, /*precise=*/true);  // one primitive: reuses z's buffer
      if (s > 0.0f) dz = mx::subtract(*dz, mx::array(s / plan.vocab, ldt));
      auto safe_t = mx::expand_dims(mx::where(valid, t, mx::array(0, t.dtype())), -1);  // (n, 1)
      if (s < 1.0f) dz = mx::scatter_add_axis(*dz, safe_t, mx::full({n, 1}, -(1.0f - s), ldt), 1);
    }
    auto scale = mx::where(valid, rows(cotangent, start, stop), mx::array(0.0f, ldt));  // (n,)
    auto scaled = mx::astype(mx::multiply(*dz, mx::expand_dims(scale, -1)), plan.compute_dtype);

    grad_hidden.push_back(mx::astype(mx::matmul(scaled, weight), ldt));  // (n, H)
    previous = {grad_hidden.back()};
    if (plan.weight_grad) {
      auto dw = mx::astype(mx::matmul(mx::transpose(scaled), h), ldt);  // (V, H)
      grad_weight = grad_weight ? mx::add(*grad_weight, dw) : dw;
      previous.push_back(*grad_weight);
    }
  }
  auto gh = grad_hidden.size() == 1 ? grad_hidden[0] : mx::concatenate(grad_hidden, 0);
  return {gh, grad_weight};
}

// A chunk's per-token losses (n,) in the loss dtype and their gradient w.r.t. the logits,
// dz = softmax(z) - (1 - s) onehot - s / V (0 for ignored tokens), (n, V) in z's dtype:
// what cpu::softmax_cross_entropy gives on the CPU, from MLX ops. Inside a compiled step the
// exponential, the one-hot and the mask fuse into one pass over z.
std::vector<mx::array> loss_and_dlogits(const mx::array& z, const mx::array& t, const Plan& plan) {
  const auto ldt = plan.loss_dtype;
  const float s = plan.label_smoothing;
  auto zf = mx::astype(z, ldt);                                                     // (n, V)
  auto valid = mx::not_equal(t, mx::array(plan.ignore_index, t.dtype()));           // (n,)
  auto safe_t = mx::expand_dims(mx::where(valid, t, mx::array(0, t.dtype())), -1);  // (n, 1)
  auto lse = mx::logsumexp(zf, -1, /*keepdims=*/true);                              // (n, 1)
  auto loss = mx::subtract(lse, mx::take_along_axis(zf, safe_t, -1));               // (n, 1)
  if (s > 0.0f)
    loss = mx::add(mx::multiply(mx::array(1.0f - s, ldt), loss),
                   mx::multiply(mx::array(s, ldt), mx::subtract(lse, mx::mean(zf, -1, true))));
  loss = mx::where(valid, mx::squeeze(loss, -1), mx::array(0.0f, ldt));
  auto classes = mx::expand_dims(mx::arange(plan.vocab, t.dtype()), 0);  // (1, V)
  auto onehot = mx::astype(mx::equal(classes, safe_t), ldt);             // (n, V)
  auto dz =
      mx::subtract(mx::exp(mx::subtract(zf, lse)), mx::multiply(mx::array(1.0f - s, ldt), onehot));
  if (s > 0.0f) dz = mx::subtract(dz, mx::array(s / plan.vocab, ldt));
  dz = mx::where(mx::expand_dims(valid, -1), dz, mx::array(0.0f, ldt));
  return {loss, mx::astype(dz, z.dtype())};
}

// Note [Gradients in the forward on the CPU]: the summed loss (scalar), then the gradients of
// that sum w.r.t. hidden (N, H) and, if plan.weight_grad, weight (V, H), in the loss dtype.
// On a GPU the same saves the recomputed logits product, and several passes over each
// chunk's logits (Note [Gradients in the forward on a GPU]).
std::vector<mx::array> forward_with_gradients(const mx::array& hidden, const mx::array& weight,
                                              const mx::array& targets, const Plan& plan) {
  if (plan.head_kernel && !plan.weight_grad) {
    auto out = cpu::head_cross_entropy(hidden, weight, targets,
                                       {plan.ignore_index, plan.label_smoothing, true});
    return {mx::sum(out[0]), out[1]};
  }
  const auto ldt = plan.loss_dtype;
  std::vector<mx::array> losses, grad_hidden;
  std::optional<mx::array> grad_weight;  // (V, H), accumulated over chunks
  std::vector<mx::array> previous;       // what the next chunk waits for
  for (int start = 0; start < plan.num_tokens; start += plan.chunk) {
    int stop = std::min(start + plan.chunk, plan.num_tokens);
    // Note [Chunk order in the lazy graph]: this chunk waits for the previous one.
    auto h = rows(hidden, start, stop);  // (n, H)
    if (!previous.empty()) h = mx::depends({h}, previous)[0];
    auto z = mx::matmul(h, mx::transpose(weight));  // (n, V) in the compute dtype
    auto t = rows(targets, start, stop);
    auto ce = plan.cpu_kernel ? cpu::softmax_cross_entropy(
                                    z, t, {plan.ignore_index, plan.label_smoothing, true})
                              : loss_and_dlogits(z, t, plan);
    const auto& dz = ce[1];  // (n, V) in the compute dtype
    losses.push_back(ce[0]);
    grad_hidden.push_back(mx::astype(mx::matmul(dz, weight), ldt));  // (n, H)
    previous = {losses.back(), grad_hidden.back()};
    if (plan.weight_grad) {
      auto dw = mx::astype(mx::matmul(mx::transpose(dz), h), ldt);  // (V, H)
      grad_weight = grad_weight ? mx::add(*grad_weight, dw) : dw;
      previous.push_back(*grad_weight);
    }
  }
  auto concat = [](const std::vector<mx::array>& parts) {
    return parts.size() == 1 ? parts[0] : mx::concatenate(parts, 0);
  };
  std::vector<mx::array> out{mx::sum(concat(losses)), concat(grad_hidden)};
  if (grad_weight) out.push_back(*grad_weight);
  return out;
}

}  // namespace

// Note [Chunk size on a GPU]
// On the CPU a chunk of 8M logits (32 MiB in f32) keeps the working set near the caches,
// and at 128 tokens the products are already as fast as BLAS gets. On a GPU, chunks of 128
// tokens of a 128k vocabulary made the head the slowest part of the step (H100, Llama-3.2-1B
// shape, 4 x 2048 tokens, 64 chunks): the (128, H) x (H, V) products ran at about 350
// TFLOP/s against 650 for large ones, and for full fine-tuning each chunk's f32 (V, H)
// weight gradient was added into the running sum, 64 passes over 1 GiB, 52 ms of a 290 ms
// step. A CUDA chunk holds 256M logits (1 GiB in f32) instead: four chunks there. Apple GPUs
// share the machine's memory, often 16 GiB, and keep buffers alive as CUDA does (Note [Memory
// on MLX's CUDA backend]), so Metal gets 32M logits (128 MiB in f32), unmeasured so far.
int linear_cross_entropy_chunk_size(int num_tokens, int vocab, int requested, int concurrent,
                                    const std::string& backend) {
  // About 8M logits (32 MiB in f32) per chunk on the CPU, 256M on CUDA and 32M on Metal (Note
  // [Chunk size on a GPU]), split between the calls running at once; a few chunks are in flight at
  // once (Note [Chunk order in the lazy graph]). At least 128 tokens, so the matmuls stay efficient
  // for large vocabularies.
  const long chunk_values = backend == "cuda" ? 1L << 28 : backend == "cpu" ? 1L << 23 : 1L << 25;
  constexpr long kMinTokens = 128;
  long budget = chunk_values / std::max(concurrent, 1);
  long chunk = requested > 0 ? requested : std::max(kMinTokens, budget / std::max(vocab, 1));
  return static_cast<int>(std::clamp<long>(chunk, 1, std::max(num_tokens, 1)));
}

mx::array linear_cross_entropy(const mx::array& hidden, const mx::array& weight,
                               const mx::array& targets, const LinearCrossEntropyOptions& options) {
  auto [flat_hidden, flat_targets] = flatten_inputs(hidden, weight, targets, options);
  auto compute_dtype = mx::promote_types(hidden.dtype(), weight.dtype());
  Plan plan{static_cast<int>(flat_targets.size()),
            weight.shape(0),
            linear_cross_entropy_chunk_size(
                flat_targets.size(), weight.shape(0), options.chunk_size, cpu::concurrent_shards(),
                mx::default_device() == mx::Device::gpu ? backend_name() : std::string("cpu")),
            options.ignore_index,
            options.label_smoothing,
            options.weight_grad,
            cpu::softmax_cross_entropy_supported(compute_dtype),
            cpu::head_cross_entropy_supported(compute_dtype, compute_dtype, weight.shape(1)),
            compute_dtype,
            train::loss_dtype(compute_dtype)};

  if (options.gradients_in_forward && options.reduction != train::Reduction::none) {
    auto fused = mx::custom_vjp(
        [plan](const std::vector<mx::array>& in) {
          auto h = mx::astype(in[0], plan.compute_dtype);
          auto w = mx::astype(in[1], plan.compute_dtype);
          return forward_with_gradients(h, w, in[2], plan);
        },
        [plan](const std::vector<mx::array>& primals, const std::vector<mx::array>& cotangents,
               const std::vector<mx::array>& outputs) {
          auto g = mx::astype(cotangents[0], plan.loss_dtype);  // () the summed loss's cotangent
          return std::vector<mx::array>{
              mx::astype(mx::multiply(outputs[1], g), primals[0].dtype()),
              plan.weight_grad ? mx::astype(mx::multiply(outputs[2], g), primals[1].dtype())
                               : mx::zeros_like(primals[1]),
              mx::zeros_like(primals[2])};
        });
    auto total = fused({flat_hidden, weight, flat_targets})[0];  // ()
    if (options.reduction == train::Reduction::sum) return total;
    auto count = train::num_valid_tokens(flat_targets, options.ignore_index);
    return mx::divide(total, mx::astype(count, total.dtype()));
  }

  auto fused = mx::custom_vjp(
      [plan](const std::vector<mx::array>& in) {
        auto h = mx::astype(in[0], plan.compute_dtype);
        auto w = mx::astype(in[1], plan.compute_dtype);
        return std::vector<mx::array>{forward(h, w, in[2], plan)};
      },
      [plan](const std::vector<mx::array>& primals, const std::vector<mx::array>& cotangents,
             const std::vector<mx::array>& outputs) {
        auto h = mx::astype(primals[0], plan.compute_dtype);
        auto w = mx::astype(primals[1], plan.compute_dtype);
        auto [gh, gw] = backward(h, w, primals[2], mx::astype(cotangents[0], plan.loss_dtype),
                                 outputs[0], plan);
        return std::vector<mx::array>{
            mx::astype(gh, primals[0].dtype()),
            gw ? mx::astype(*gw, primals[1].dtype()) : mx::zeros_like(primals[1]),
            mx::zeros_like(primals[2])};
      });
  auto per_token = fused({flat_hidden, weight, flat_targets})[0];  // (N,)

  switch (options.reduction) {
    case train::Reduction::none:
      return mx::reshape(per_token, targets.shape());
    case train::Reduction::sum:
      return mx::sum(per_token);
    case train::Reduction::mean: {
      auto count = train::num_valid_tokens(flat_targets, options.ignore_index);
      return mx::divide(mx::sum(per_token), mx::astype(count, per_token.dtype()));
    }
  }
  FT_ASSERT(false);
}

mx::array linear_cross_entropy_composite(const mx::array& hidden, const mx::array& weight,
                                         const mx::array& targets,
                                         const LinearCrossEntropyOptions& options) {
  auto [flat_hidden, flat_targets] = flatten_inputs(hidden, weight, targets, options);
  auto logits = mx::matmul(flat_hidden, mx::transpose(weight));  // (N, V)
  auto loss = train::cross_entropy(
      logits, flat_targets, {options.ignore_index, options.label_smoothing, options.reduction});
  return options.reduction == train::Reduction::none ? mx::reshape(loss, targets.shape()) : loss;
}

}  // namespace ft::kernels
