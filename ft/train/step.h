// One training step: (params, batch) -> (loss, grads), then clip and update.
//
// The loss function returns the SUM of per-token losses and the count of trained
// tokens of one micro-batch. The step adds both over the micro-batches of a
// gradient-accumulation step and divides once, so every trained token weighs the
// same whatever the padding or masking of each micro-batch (Note [Token-normalised
// accumulation] in step.cpp).
//
// Mixed precision: trainable parameters held in bfloat16 or float16 get f32 masters that
// the optimizer updates, and the model computes with them cast back to the parameter's
// dtype (Note [Master weights] in step.cpp). StepConfig::loss_scale turns on dynamic loss
// scaling for float16 (precision.h).
#pragma once

#include <functional>
#include <mutex>
#include <optional>
#include <vector>

#include <mlx/array.h>

#include "ft/core/param_map.h"
#include "ft/nn/module.h"
#include "ft/train/precision.h"
#include "ft/train/row_shards.h"

namespace ft {

namespace mx = mlx::core;

class Optimizer;
namespace train {
class DataParallel;
}

// A micro-batch: arrays the loss function knows how to read (e.g. input ids,
// targets, mask). The step passes them through unchanged.
using Batch = std::vector<mx::array>;

struct LossOutput {
  mx::array loss_sum;  // () f32: sum of the per-token losses
  mx::array tokens;    // () count of trained tokens (any numeric dtype)
};

// Runs the model on a batch. `key` is a fresh random key for this micro-batch
// (dropout), an input of the traced graph so compiled steps draw new masks.
using LossFn =
    std::function<LossOutput(nn::Module& model, const Batch& batch, const mx::array& key)>;

struct StepConfig {
  bool compile = true;                 // trace value_and_grad once per batch shape
  std::optional<float> max_grad_norm;  // global-norm clipping
  // Dynamic loss scaling (float16 models); none: the loss is not scaled.
  std::optional<LossScaleConfig> loss_scale;
  // On the CPU, each micro-batch's rows are split into this many shards whose forward and
  // backward run at once, each on a thread and stream of its own (Note [Row shards on the
  // CPU] in row_shards.cpp); 0: one per CPU thread (ft::kernels::cpu::num_threads()); 1: off.
  // Used only when every batch array is (rows, ...) with the same rows, and needs a loss
  // that adds up over rows, as LossFn's sum of per-token losses does.
  int row_shards = 0;
  // f32 masters for parameters held in bfloat16 or float16 (Note [Master weights] in
  // step.cpp); off, the optimizer updates the 16-bit parameters themselves.
  bool master_weights = true;
  // The ranks of a data-parallel run: the step's sums are added across them before it
  // divides, clips and updates (Note [Data parallelism] in data_parallel.cpp); null: alone.
  const train::DataParallel* parallel = nullptr;
  // With parallel: each rank keeps the optimizer state of its share of the parameters and
  // updates only those; the updated parameters are then summed across ranks (Note
  // [Sharded optimizer state] in step.cpp).
  bool shard_optimizer_state = false;
};

struct StepResult {
  float loss = 0;       // mean loss per trained token over the accumulated batches
  double tokens = 0;    // trained tokens in the step
  float grad_norm = 0;  // before clipping
  float learning_rate = 0;
  float loss_scale = 1;  // the scale this step's loss was multiplied by
  bool skipped = false;  // the gradients overflowed: no update was made
};

class TrainStep {
 public:
  TrainStep(nn::Module& model, LossFn loss_fn, Optimizer& optimizer, StepConfig config = {});

  // Loss and gradients of one micro-batch w.r.t. the trainable parameters, lazily:
  // gradients are of the loss SUM (not yet divided by the token count), unscaled, in the
  // parameters' own dtype (Note [Master weights] in step.cpp).
  std::pair<LossOutput, ParamMap> loss_and_grads(const Batch& batch, const mx::array& key);

  // Accumulates over the micro-batches, normalises by their total token count, clips,
  // updates the masters through the optimizer, writes them into the model and evaluates
  // once. With loss scaling, a step with non-finite gradients changes neither the
  // parameters nor the optimizer and is reported as skipped.
  StepResult run(const std::vector<Batch>& micro_batches, const std::vector<mx::array>& keys);

  // The trainable parameters as the optimizer sees them: f32 for parameters the model
  // holds in bfloat16 or float16 (with StepConfig::master_weights), the model's own
  // arrays otherwise. A checkpoint saves these.
  const ParamMap& masters();
  // Replaces the masters (names, shapes and a floating dtype checked, cast to each
  // master's dtype) and writes them into the model cast to its dtypes. Throws ft::Error
  // naming what does not fit.
  void load_masters(const ParamMap& masters);
  // The optimizer's whole state (gathered from every rank when it is sharded: every rank
  // must call it), and a saved whole state loaded (each rank keeping its share).
  ParamMap optimizer_state();
  void load_optimizer_state(const ParamMap& state);
  // The loss scaler; null when loss scaling is off.
  LossScaler* loss_scaler() { return scaler_ ? &*scaler_ : nullptr; }

 private:
  using TracedFn = std::function<std::vector<mx::array>(const std::vector<mx::array>&)>;
  nn::Module& model_;
  LossFn loss_fn_;
  Optimizer& optimizer_;
  StepConfig config_;
  // Takes new masters from the model for parameters someone replaced since the last step
  // (a load, a manual update), so the model stays the source of truth between steps.
  void sync_masters();
  // Makes these the masters and writes them into the model cast to each parameter's dtype.
  void set_masters(ParamMap masters);
  // loss_and_grads after sync_masters: one call of the traced step.
  std::pair<LossOutput, ParamMap> traced_loss_and_grads(const Batch& batch, const mx::array& key);
  // loss_and_grads split over row shards, each evaluated on its own worker; the shards'
  // sums come back lazy.
  std::pair<LossOutput, ParamMap> sharded_loss_and_grads(const Batch& batch, const mx::array& key,
                                                         int shards);

  // Whether this rank updates names_[i] (all true unless the state is sharded).
  const std::vector<bool>& owned();
  bool sharded() const;

  std::vector<std::string> names_;  // trainable parameter names, in order
  std::vector<bool> owned_;
  std::vector<mx::Dtype> compute_dtypes_;  // each parameter's dtype in the model
  ParamMap masters_;                       // see masters()
  // The arrays last written into the model. Holding them keeps their ids unique, so an
  // id that differs from the model's means the model's parameter was replaced.
  ParamMap working_;
  std::optional<LossScaler> scaler_;
  TracedFn traced_;
  RowShards row_shards_;
  std::mutex trace_mutex_;  // tracing touches the model: one shard at a time
  // Whether the shards' evaluations are paced: after a first step whose graphs did not
  // recompute activations. Gradient checkpointing keeps MLX's own budget of tasks in flight,
  // which bounds how many rebuilt layers are held at once.
  bool paced_shards_ = false;
  bool checkpointed_ = false;
};

}  // namespace ft
