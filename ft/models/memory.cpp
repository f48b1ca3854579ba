#include "ft/models/memory.h"

#include <algorithm>

#include "ft/core/error.h"
#include "ft/kernels/cpu/fused_attention.h"
#include "ft/kernels/cpu/head_cross_entropy.h"
#include "ft/kernels/linear_cross_entropy.h"
#include "ft/nn/lora.h"
#include "ft/nn/quantized_linear.h"  // defines: QuantizedLinear, kDequantizedRowsOnGpu

namespace ft::models {

// Note [Activation memory]
// ~~~~~~~~~~~~~~~~~~~~~~~~
// Reverse-mode autodiff keeps, per decoder layer and token, the inputs of the ops whose
// vector-Jacobian products need them:
//   - the layer input and the attention norm's output (h each), the rotated queries,
//     keys and values (q + 2 kv), the attention output going into o_proj (q), the
//     residual sum and the MLP norm's output (h each);
//   - gate and up for the SwiGLU product, and the product going into down_proj (3 i);
//   - x A of every adapted layer (r each), needed for B's gradient;
//   - without a fused attention kernel, the softmax output (heads x keys), which both
//     the softmax and the probabilities-times-values products read; with one (ft's on the
//     CPU, Note [Attention in blocks]) a logsumexp per head instead.
// With gradient checkpointing only each layer's input stays; one layer's activations
// are rebuilt at a time during the backward pass. While a layer's backward runs, its
// activation gradients take about as much again, so one layer's worth is added on top
// (with checkpointing, on top of the rebuilt layer's). MLX's eval order can rebuild several
// checkpointed layers ahead of their backward, more with fewer row shards
// (tests/models/memory_test.cpp); the estimate assumes one.
// On CPU this comes within 20% of the allocator's measured peak (tests/models/memory_test).

// Note [Memory on MLX's CUDA backend]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// Measured with `ft bench --json` on an H100 (peak_mem_gib, MLX's peak of allocated device
// memory), Llama-3.2-1B shape unless said, bfloat16, LoRA r16 on every linear layer:
//   LoRA 4 x 2048 25.5 GiB; full 4 x 2048 42.4; LoRA 4 x 2048 checkpointed 22.7;
//   Qwen2.5-0.5B LoRA 8 x 1024 25.2; LoRA 1 x 16384 checkpointed 34.4; 1 x 32768 58.0.
// Three things differ from the CPU:
//   - attention runs through cuDNN's flash kernels (bf16 or f16, head dims multiples of 8 up
//     to 128), which keep one logsumexp per row and query, not the scores;
//   - MLX releases an op's buffers only when its command buffer completes, while the host
//     encodes the step far ahead of the GPU, so the head's chunks do not die one by one
//     (Note [Chunk order in the lazy graph]): up to five chunks' logits, softmax and
//     gradient (three f32 (chunk, vocab) buffers each) were alive at once;
//   - in MLX's evaluation order the layers that gradient checkpointing rebuilds are alive
//     together: checkpointing saved 11% of the peak above (25.5 to 22.7 GiB), not the
//     activations it drops on the CPU, so the estimate counts every layer's activations on
//     CUDA, checkpointed or not.
// MLX's memory limit bounds the second: above it, its evaluation waits for queued command
// buffers before encoding more (MLX's default limit is 80% of the GPU, far above these
// peaks on an 80 GB card). With `--memory-limit` the LoRA run above peaked at 14.8 GiB
// under a limit of 14 (60,360 tokens/s against 68,392 without) and at 13.8 under 10 (52,809:
// below what the step keeps alive, the host waits at every buffer); checkpointed under 8,
// 14.9 GiB; full fine-tuning with bfloat16 optimizer state and no f32 masters 33.2 GiB, and
// 20.7 under a limit of 20. So the estimate is the buffers the step keeps alive (one head
// chunk's logits and gradient at a time) plus the deferred ones (MemoryEstimate::deferred:
// the chunks' three buffers each), as far as the limit lets them. With these it comes within 10% of
// every run above (tests/models/memory_test.cpp keeps them so). It is a calibration on runs of two
// shapes, not a derivation: the deferred release is MLX's, and how far ahead the host gets decides
// how many chunks and layers it holds. A quantized base adds the matrices its layers
// dequantize for their products (Note [Many rows on a GPU] in ft/nn/quantized_linear.cpp):
// one layer's in use, the others' deferred like the head's chunks. Llama-3.1-8B QLoRA
// (4 bits, groups of 64) at 1 x 2048 peaked at 28.8 GiB (30.6 estimated), 28.9
// checkpointed (30.8), 16.7 under a limit of 16, 16.2 under 12 (16.1 both) and 17.6
// checkpointed under 9 (16.3). The 8B LoRA in bf16 at 2 x 2048 still falls short: 44.8 GiB
// against 39.2 (12% under), a run without an allocation profile; the deferred buffers of
// layers this wide are the likely difference.

namespace {

// Head chunks alive at once on CUDA (Note [Memory on MLX's CUDA backend]).
constexpr int64_t kCudaChunksAlive = 5;

struct LayerShape {
  int64_t hidden, q, kv, intermediate, heads;
};

// Elements kept per token by one decoder layer (Note [Activation memory]).
int64_t kept_per_token(const LayerShape& s, int64_t lora_elements, int64_t keys,
                       bool materialized_attention) {
  int64_t n = 4 * s.hidden + (s.q + 2 * s.kv) + s.q + 3 * s.intermediate + lora_elements;
  n += materialized_attention ? s.heads * keys : s.heads;
  return n;
}

}  // namespace

int optimizer_states_per_parameter(const std::string& optimizer) {
  if (optimizer == "adam" || optimizer == "adamw") return 2;
  if (optimizer == "lion" || optimizer == "sgd") return 1;  // SGD's momentum buffer
  if (optimizer == "adafactor") return 0;
  throw Error("memory",
              "unknown optimizer '" + optimizer + "' (known: sgd, adam, adamw, adafactor, lion)");
}

MemoryEstimate estimate_training_memory(const CausalLM& model, const TrainingPlan& plan) {
  FT_CHECK(plan.batch_size > 0 && plan.seq_length > 0, "memory",
           "batch size and sequence length must be positive");
  MemoryEstimate m;
  const int states = optimizer_states_per_parameter(plan.optimizer);
  for (const auto& [name, p] : model.parameters()) m.weights += p.nbytes();
  for (const auto& [name, p] : model.trainable_parameters()) {
    m.gradients += p.nbytes();  // in the parameter's dtype (Note [Master weights], step.cpp)
    if (p.itemsize() < 4 && plan.master_weights) m.master_weights += p.size() * 4;
    m.optimizer_state += uint64_t(states) * p.size() * plan.optimizer_state_bytes;
  }

  const Config& c = model.config();
  // A mixture of experts keeps the MLP activations of the experts each token runs.
  int64_t experts_run = c.num_experts > 0 ? c.num_experts_per_tok : 1;
  LayerShape shape{c.hidden_size, int64_t(c.num_attention_heads) * c.resolved_head_dim(),
                   int64_t(c.num_key_value_heads) * c.resolved_head_dim(),
                   experts_run * c.intermediate_size, c.num_attention_heads};
  // LoRA ranks per layer: x A of each adapted module, spread evenly over the layers.
  int64_t lora_total = 0;
  for (const auto& [path, module] : model.named_modules())
    if (auto* l = dynamic_cast<const nn::LoRALinear*>(module)) lora_total += l->rank();
  int64_t lora_per_layer = lora_total / std::max(1, c.num_hidden_layers);

  const int64_t tokens = int64_t(plan.batch_size) * plan.seq_length;
  const int64_t keys =
      c.sliding_window > 0 ? std::min(plan.seq_length, c.sliding_window) : plan.seq_length;
  const int64_t itemsize = model.output_weight().itemsize();
  const mx::Dtype dtype = model.output_weight().dtype();
  const int head_dim = c.resolved_head_dim();
  const bool cuda = plan.backend == "cuda";
  // ft's attention kernel on the CPU, cuDNN's flash attention on CUDA (Note [Memory on MLX's
  // CUDA backend]; a sliding window's mask is left to the plain path). Soft-capped scores
  // (Gemma 2) go through plain ops, which keep them.
  const bool fused_cpu = plan.backend == "cpu" &&
                         kernels::cpu::fused_attention_supported(dtype, head_dim, mx::Device::cpu);
  const bool fused_cuda = cuda && (dtype == mx::bfloat16 || dtype == mx::float16) &&
                          head_dim % 8 == 0 && head_dim <= 128 && c.sliding_window <= 0;
  const bool materialized = c.attn_logit_softcapping > 0 || !(fused_cpu || fused_cuda);
  const int64_t layer =
      tokens * kept_per_token(shape, lora_per_layer, keys, materialized) * itemsize;
  const int64_t layers = c.num_hidden_layers;
  if (plan.grad_checkpoint && cuda) {
    // Every rebuilt layer stays alive (Note [Memory on MLX's CUDA backend]); the backward
    // works inside one of them.
    m.activations = layers * tokens * c.hidden_size * itemsize + layers * layer;
  } else if (plan.grad_checkpoint) {
    m.activations = layers * tokens * c.hidden_size * itemsize + 2 * layer;
  } else {
    m.activations = (layers + 1) * layer;
  }
  // The embedding output and the final norm's input and output.
  m.activations += 3 * tokens * c.hidden_size * itemsize;
  const int shards = std::max(1, plan.row_shards);
  const int64_t shard_tokens = (tokens + shards - 1) / shards;
  // A frozen f32 head on the CPU runs in one pass without logits (Note [One pass over the
  // vocabulary]): each shard's call holds a few buffers of its own rows.
  bool head_trained = false;
  for (const auto& [name, p] : model.trainable_parameters())
    head_trained |= name == model.output_weight_name();
  const mx::array weight = model.output_weight();
  if (model.logit_softcap() > 0 || model.output_bias()) {
    // The whole (tokens, vocab) f32 logits, their capped form and their gradient
    // (train::causal_lm_loss forms them for such heads).
    m.head = 3 * uint64_t(tokens) * c.vocab_size * 4;
    return m;
  }
  if (cuda) {
    // Note [Memory on MLX's CUDA backend]: one chunk's logits and gradient alive, and the
    // buffers of up to five chunks deferred as far as the memory limit lets them.
    const int64_t chunk = kernels::linear_cross_entropy_chunk_size(static_cast<int>(tokens),
                                                                   c.vocab_size, 0, 1, "cuda");
    const int64_t alive = std::min((tokens + chunk - 1) / chunk, kCudaChunksAlive);
    const uint64_t buffer = uint64_t(chunk) * c.vocab_size * 4;  // f32 (chunk, vocab)
    m.head = 2 * buffer;
    // Quantized layers multiply by their dequantized matrices (Note [Many rows on a GPU] in
    // ft/nn/quantized_linear.cpp): one layer's are in use, the others' buffers deferred.
    uint64_t dequantized = 0;
    if (tokens >= nn::kDequantizedRowsOnGpu)
      for (const auto& [path, module] : model.named_modules()) {
        auto* q = dynamic_cast<const nn::QuantizedLinear*>(module);
        if (auto* adapted = dynamic_cast<const nn::LoRALinear*>(module))
          q = dynamic_cast<const nn::QuantizedLinear*>(adapted->base().get());
        if (q) dequantized += uint64_t(q->in_features()) * q->out_features() * itemsize;
      }
    const uint64_t dequantized_layer = dequantized / uint64_t(std::max<int64_t>(1, layers));
    m.dequantized = dequantized_layer;
    const uint64_t kept = m.total();
    m.deferred = 3 * alive * buffer - 2 * buffer + dequantized - dequantized_layer;
    if (plan.memory_limit > 0)
      m.deferred = std::min(m.deferred, plan.memory_limit - std::min(plan.memory_limit, kept));
    return m;
  }
  if (!head_trained && plan.backend == "cpu" &&
      kernels::cpu::head_cross_entropy_supported(weight.dtype(), weight.dtype(), c.hidden_size)) {
    m.head = shards * kernels::cpu::head_cross_entropy_scratch_bytes(shard_tokens, c.hidden_size,
                                                                     c.vocab_size) +
             kernels::cpu::head_cross_entropy_packed_bytes(c.vocab_size, c.hidden_size);
    return m;
  }
  // Chunks of f32 (chunk, vocab) buffers: measured, about three alive per stream (the
  // logits, their gradient, and the next op's output that MLX allocates ahead), also when
  // row shards run at once (paced, Note [Pacing the host thread]), each shard with chunks of
  // its own rows and its share of the budget of logits.
  int chunk = kernels::linear_cross_entropy_chunk_size(static_cast<int>(shard_tokens), c.vocab_size,
                                                       0, shards, plan.backend);
  m.head = shards * 3 * uint64_t(chunk) * c.vocab_size * 4;
  return m;
}

}  // namespace ft::models
