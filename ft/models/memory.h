// What a training run of a model needs in memory, estimated before running it: the
// weights as they are held (quantized or not), the trained parameters' gradients, f32
// master copies and optimizer state, the activations kept for the backward pass and the
// output head's chunked logits. `ft info MODEL` prints it.
//
// The activation term counts the tensors each decoder layer keeps for its backward pass
// per token (Note [Activation memory] in memory.cpp); it is an estimate, not a bound: the
// allocator's caching and the backend's attention kernels move the real peak.
#pragma once

#include <cstdint>
#include <string>

#include <mlx/array.h>

#include "ft/models/causal_lm.h"

namespace ft::models {

struct TrainingPlan {
  int batch_size = 4;
  int seq_length = 512;
  bool grad_checkpoint = false;
  std::string optimizer = "adamw";  // sgd, adam, adamw, adafactor, lion
  // Where the step runs: "cpu", "cuda" or "metal" (train::training_plan takes it from the
  // default device). It decides whether attention keeps its scores (ft's kernel on the CPU
  // and cuDNN's on CUDA do not), the head's chunks and what checkpointing saves (Note
  // [Memory on MLX's CUDA backend] in memory.cpp).
  std::string backend = "cpu";
  // Row shards of a batch run at once, each with its own head chunk (ft::row_shards).
  int row_shards = 1;
  bool master_weights = true;     // f32 copies of 16-bit trained parameters (StepConfig)
  int optimizer_state_bytes = 4;  // per moment: 4 (float32) or 2 (bfloat16)
  // MLX's memory limit (mx::set_memory_limit; train::training_plan takes the current one):
  // above it the host waits for queued GPU work before encoding more, which bounds the
  // buffers CUDA holds past their last use (MemoryEstimate::deferred). 0: no limit.
  uint64_t memory_limit = 0;
};

struct MemoryEstimate {
  uint64_t weights = 0;          // every parameter as held, trained or frozen
  uint64_t gradients = 0;        // one per trained parameter, in its dtype
  uint64_t master_weights = 0;   // f32 copies of trained parameters held in 16 bits
  uint64_t optimizer_state = 0;  // moments of the trained parameters
  uint64_t activations = 0;      // kept by the decoder layers for the backward pass
  uint64_t head = 0;             // the output head's logits and their gradient, per chunk
  // On a GPU, one quantized layer's matrices dequantized for its products (Note [Many rows
  // on a GPU] in ft/nn/quantized_linear.cpp).
  uint64_t dequantized = 0;
  // On CUDA, buffers kept past their last use while the host encodes ahead of the GPU
  // (Note [Memory on MLX's CUDA backend]), up to the plan's memory limit.
  uint64_t deferred = 0;
  uint64_t total() const {
    return weights + gradients + master_weights + optimizer_state + activations + head +
           dequantized + deferred;
  }
};

// The model as built (after apply_lora or quantization): its parameters' shapes and
// dtypes decide the weights, the trainable ones the gradients and optimizer state. The
// arrays need not be evaluated, so a model built lazily from a config costs nothing.
MemoryEstimate estimate_training_memory(const CausalLM& model, const TrainingPlan& plan);

// f32 moments an optimizer keeps per trained parameter (Adafactor's factored moments are
// counted as none). Throws ft::Error for an unknown name.
int optimizer_states_per_parameter(const std::string& optimizer);

}  // namespace ft::models
