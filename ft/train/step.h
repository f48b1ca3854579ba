// One training step: (params, batch) -> (loss, grads), then clip and update.
//
// The loss function returns the SUM of per-token losses and the count of trained
// tokens of one micro-batch. The step adds both over the micro-batches of a
// gradient-accumulation step and divides once, so every trained token weighs the
// same whatever the padding or masking of each micro-batch (Note [Token-normalised
// accumulation] in step.cpp).
#pragma once

#include <functional>
#include <optional>
#include <vector>

#include <mlx/array.h>

#include "ft/core/param_map.h"
#include "ft/nn/module.h"

namespace ft {

namespace mx = mlx::core;

class Optimizer;

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
};

struct StepResult {
  float loss = 0;       // mean loss per trained token over the accumulated batches
  double tokens = 0;    // trained tokens in the step
  float grad_norm = 0;  // before clipping
  float learning_rate = 0;
};

class TrainStep {
 public:
  TrainStep(nn::Module& model, LossFn loss_fn, Optimizer& optimizer, StepConfig config = {});

  // Loss and gradients of one micro-batch w.r.t. the trainable parameters, lazily:
  // gradients are of the loss SUM (not yet divided by the token count).
  std::pair<LossOutput, ParamMap> loss_and_grads(const Batch& batch, const mx::array& key);

  // Accumulates over the micro-batches, normalises by their total token count,
  // clips, updates the model through the optimizer and evaluates once.
  StepResult run(const std::vector<Batch>& micro_batches, const std::vector<mx::array>& keys);

 private:
  using TracedFn = std::function<std::vector<mx::array>(const std::vector<mx::array>&)>;
  nn::Module& model_;
  LossFn loss_fn_;
  Optimizer& optimizer_;
  StepConfig config_;
  std::vector<std::string> names_;  // trainable parameter names, in order
  TracedFn traced_;
};

}  // namespace ft
