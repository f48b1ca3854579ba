#include "ft/train/step.h"

#include <mlx/compile.h>
#include <mlx/ops.h>
#include <mlx/transforms.h>

#include "ft/nn/dropout.h"
#include "ft/train/clip.h"
#include "ft/train/optimizer.h"

namespace ft {

// Note [Token-normalised accumulation]
// Averaging per-micro-batch mean losses weighs a token of a short micro-batch more
// than one of a long micro-batch. We differentiate the loss SUM of each micro-batch,
// add the gradients and the token counts, and divide by the total count once. The
// result equals the gradient of the mean loss over all trained tokens of the step,
// as if the micro-batches were one batch.

TrainStep::TrainStep(nn::Module& model, LossFn loss_fn, Optimizer& optimizer, StepConfig config)
    : model_(model), loss_fn_(std::move(loss_fn)), optimizer_(optimizer), config_(config) {
  names_ = model_.trainable_parameters().names();
  FT_CHECK(!names_.empty(), "train", "the model has no trainable parameters");
  // Inputs: [trainable params..., key, batch arrays...]; outputs: [loss_sum, tokens, grads...].
  size_t n_params = names_.size();
  auto forward = [this, n_params](const std::vector<mx::array>& inputs) {
    model_.update(ParamMap::zip(names_, {inputs.begin(), inputs.begin() + n_params}));
    Batch batch(inputs.begin() + n_params + 1, inputs.end());
    // The key is an input of the traced graph, so each step draws new dropout masks.
    nn::reseed_dropout(model_, inputs[n_params]);
    LossOutput out = loss_fn_(model_, batch, inputs[n_params]);
    return std::vector<mx::array>{out.loss_sum, mx::stop_gradient(out.tokens)};
  };
  std::vector<int> argnums(n_params);
  for (size_t i = 0; i < n_params; ++i) argnums[i] = static_cast<int>(i);
  auto value_and_grad = mx::value_and_grad(forward, argnums);
  TracedFn traced = [value_and_grad](const std::vector<mx::array>& inputs) {
    auto [values, grads] = value_and_grad(inputs);
    values.insert(values.end(), grads.begin(), grads.end());
    return values;
  };
  traced_ = config_.compile ? mx::compile(traced) : traced;
}

std::pair<LossOutput, ParamMap> TrainStep::loss_and_grads(const Batch& batch,
                                                          const mx::array& key) {
  ParamMap current = model_.trainable_parameters();
  std::vector<mx::array> inputs = current.arrays();
  FT_CHECK(inputs.size() == names_.size(), "train",
           "the set of trainable parameters changed after the step was built");
  inputs.push_back(key);
  inputs.insert(inputs.end(), batch.begin(), batch.end());
  std::vector<mx::array> outputs = traced_(inputs);
  // Tracing left placeholders in the model; put the real arrays back.
  model_.update(current);
  nn::reseed_dropout(model_, key);
  LossOutput loss{outputs[0], outputs[1]};
  return {loss, ParamMap::zip(names_, {outputs.begin() + 2, outputs.end()})};
}

StepResult TrainStep::run(const std::vector<Batch>& micro_batches,
                          const std::vector<mx::array>& keys) {
  FT_CHECK(!micro_batches.empty(), "train", "a step needs at least one micro-batch");
  FT_CHECK(keys.size() == micro_batches.size(), "train", "one random key per micro-batch");
  std::optional<ParamMap> grad_sum;
  mx::array loss_sum = mx::array(0.0f), tokens = mx::array(0.0f);
  for (size_t i = 0; i < micro_batches.size(); ++i) {
    auto [loss, grads] = loss_and_grads(micro_batches[i], keys[i]);
    loss_sum = loss_sum + loss.loss_sum;
    tokens = tokens + mx::astype(loss.tokens, mx::float32);
    grad_sum = grad_sum ? tree_map(*grad_sum, grads,
                                   [](const mx::array& a, const mx::array& b) { return a + b; })
                        : grads;
    // Evaluating here keeps one micro-batch's activations alive at a time.
    if (micro_batches.size() > 1) {
      std::vector<mx::array> pending = grad_sum->arrays();
      pending.push_back(loss_sum);
      pending.push_back(tokens);
      mx::eval(pending);
    }
  }
  mx::array denominator = mx::maximum(tokens, mx::array(1.0f));
  ParamMap grads = tree_map(
      *grad_sum, [&](const mx::array& g) { return mx::astype(g / denominator, g.dtype()); });
  mx::array norm = mx::array(0.0f);
  if (config_.max_grad_norm) {
    ClippedGrads clipped = clip_grad_norm(grads, *config_.max_grad_norm);
    grads = std::move(clipped.grads);
    norm = clipped.norm;
  } else {
    norm = global_norm(grads);
  }
  StepResult result;
  result.learning_rate = optimizer_.learning_rate();
  ParamMap updated = optimizer_.update(model_.trainable_parameters(), grads);
  model_.update(updated);
  std::vector<mx::array> outputs = updated.arrays();
  ParamMap state = optimizer_.state();
  for (const auto& [name, value] : state) outputs.push_back(value);
  mx::array mean_loss = loss_sum / denominator;
  outputs.push_back(mean_loss);
  outputs.push_back(tokens);
  outputs.push_back(norm);
  mx::eval(outputs);
  result.loss = mean_loss.item<float>();
  result.tokens = tokens.item<float>();
  result.grad_norm = norm.item<float>();
  return result;
}

}  // namespace ft
