#include "ft/train/step.h"

#include <algorithm>
#include <set>

#include <mlx/compile.h>
#include <mlx/ops.h>
#include <mlx/random.h>
#include <mlx/transforms.h>
#include <mlx/utils.h>  // operator<< for Dtype in messages

#include "ft/core/evaluate.h"
#include "ft/nn/checkpoint.h"
#include "ft/nn/dropout.h"
#include "ft/train/clip.h"
#include "ft/train/data_parallel.h"
#include "ft/train/optimizer.h"

namespace ft {

// Note [Token-normalised accumulation]
// Averaging per-micro-batch mean losses weighs a token of a short micro-batch more
// than one of a long micro-batch. We differentiate the loss SUM of each micro-batch,
// add the gradients and the token counts, and divide by the total count once. The
// result equals the gradient of the mean loss over all trained tokens of the step,
// as if the micro-batches were one batch.

// Note [Master weights]
// A parameter the model holds in bfloat16 or float16 cannot absorb updates much smaller
// than itself (bf16 keeps 8 bits of mantissa: w + 1e-4 w == w), so the optimizer works
// on an f32 master and the model computes with the master cast to the parameter's dtype
// (the working copy, cast once per update). The traced step takes the working copies as
// its inputs, so the gradients come out of the backward in the parameter's dtype: half
// the memory of f32 gradients, and no cast pass over them. The optimizer's compiled rule
// reads them as f32 (Optimizer::update), and its state is f32 as it always is; gradients
// of several micro-batches are added up in f32. Parameters the model already holds in f32
// (LoRA adapters over a bf16 base, as PEFT keeps them) are their own masters: no copy, no
// cast, and a float32 run is unchanged by all this.
//
// Without masters (StepConfig::master_weights off, `--no-master-weights`) the optimizer
// updates the 16-bit parameters in place, rounding each result to bf16 inside its kernel:
// 4 bytes less per trained parameter and no working copy to write, at the cost of
// updates below a weight's last bit being lost, as in a PyTorch run of a bf16 model.
//
// The model stays the source of truth between steps: a parameter replaced from outside
// (a load) is noticed by its array id and its master taken from it again.

// Note [One pass over the gradients]
// Dividing the summed gradients by the token count, unscaling them (Note [Loss scaling])
// and clipping them are each a multiplication by a scalar, and each written as its own op
// reads and writes every gradient once more and keeps a second full set alive: for full
// fine-tuning of a 1B model, 5 GB of float32 per pass. The step instead computes one
// scalar factor (1/S, over the token count, times the clipping coefficient) and hands it
// to the optimizer, whose compiled rule multiplies each gradient by it inside the update
// kernel (Optimizer::update's grad_factor). The global norm is that of the raw sums times
// the same factor (without clipping). A multiplication by 1/n instead of a division by n
// can differ in the last bit.

// Note [Loss scaling]
// float16 overflows above 65504 and flushes below 6e-8, so small gradients vanish in the
// backward pass. The traced step multiplies the loss sum by the scale S (an input of the
// graph, so changing S does not retrace), and the f32 gradients are divided by S before
// accumulation; S is a power of two, so both are exact. The scale applies to the loss
// SUM of a micro-batch (Note [Token-normalised accumulation]), so the scale that settles
// is about the token count smaller than a scaler of the mean loss would keep; the
// dynamic rule finds it in a few halvings. A step with an inf or NaN gradient changes
// nothing but the scale; its data is consumed all the same, as in PyTorch's GradScaler.

TrainStep::TrainStep(nn::Module& model, LossFn loss_fn, Optimizer& optimizer, StepConfig config)
    : model_(model), loss_fn_(std::move(loss_fn)), optimizer_(optimizer), config_(config) {
  ParamMap trainable = model_.trainable_parameters();
  names_ = trainable.names();
  FT_CHECK(!names_.empty(), "train", "the model has no trainable parameters");
  for (const auto& [name, value] : trainable) compute_dtypes_.push_back(value.dtype());
  if (config_.loss_scale) scaler_.emplace(*config_.loss_scale);
  // Inputs: [masters..., key, loss scale, batch arrays...];
  // outputs: [scaled loss_sum, tokens, loss_sum, grads...].
  size_t n_params = names_.size();
  auto forward = [this, n_params](const std::vector<mx::array>& inputs) {
    // Note [Master weights]: the inputs are the working copies, in the parameters' dtypes.
    model_.update(ParamMap::zip(names_, {inputs.begin(), inputs.begin() + n_params}));
    const mx::array& key = inputs[n_params];
    const mx::array& scale = inputs[n_params + 1];
    Batch batch(inputs.begin() + n_params + 2, inputs.end());
    // The key is an input of the traced graph, so each step draws new dropout masks.
    nn::reseed_dropout(model_, key);
    LossOutput out = loss_fn_(model_, batch, key);
    return std::vector<mx::array>{mx::multiply(out.loss_sum, scale), mx::stop_gradient(out.tokens),
                                  mx::stop_gradient(out.loss_sum)};
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

void TrainStep::sync_masters() {
  ParamMap current = model_.trainable_parameters();
  FT_CHECK(current.names() == names_, "train",
           "the set of trainable parameters changed after the step was built");
  for (size_t i = 0; i < names_.size(); ++i) {
    const std::string& name = names_[i];
    const mx::array& value = current.at(name);
    const mx::array* written = working_.find(name);
    if (written && written->id() == value.id()) continue;
    FT_CHECK(value.dtype() == compute_dtypes_[i], "train", "parameter '", name,
             "' changed dtype from ", compute_dtypes_[i], " to ", value.dtype(),
             " after the step was built");
    masters_.set(name,
                 config_.master_weights ? mx::astype(value, master_dtype(value.dtype())) : value);
    working_.set(name, value);
  }
}

void TrainStep::set_masters(ParamMap masters) {
  ParamMap working;
  for (size_t i = 0; i < names_.size(); ++i)
    working.set(names_[i], mx::astype(masters.at(names_[i]), compute_dtypes_[i]));
  model_.update(working);
  masters_ = std::move(masters);
  working_ = std::move(working);
}

const ParamMap& TrainStep::masters() {
  sync_masters();
  return masters_;
}

void TrainStep::load_masters(const ParamMap& masters) {
  sync_masters();
  std::string missing, problems;
  ParamMap loaded;
  for (const auto& name : names_) {
    const mx::array* value = masters.find(name);
    if (!value) {
      missing += " " + name;
      continue;
    }
    const mx::array& master = masters_.at(name);
    if (value->shape() != master.shape()) {
      problems += " " + name + " (shape)";
    } else if (!mx::issubdtype(value->dtype(), mx::floating)) {
      problems += " " + name + " (not floating)";
    }
    loaded.set(name, mx::astype(*value, master.dtype()));
  }
  FT_CHECK(missing.empty(), "train", "missing trainable parameters:", missing);
  FT_CHECK(problems.empty(), "train", "trainable parameters that do not fit:", problems);
  set_masters(std::move(loaded));
}

std::pair<LossOutput, ParamMap> TrainStep::loss_and_grads(const Batch& batch,
                                                          const mx::array& key) {
  sync_masters();
  auto [loss, grads] = traced_loss_and_grads(batch, key);
  const float scale = scaler_ ? scaler_->scale() : 1.0f;
  if (scale != 1.0f) {
    // Note [Loss scaling]: exact, S being a power of two.
    grads = tree_map(grads, [scale](const mx::array& g) {
      return mx::multiply(g, mx::array(1.0f / scale, g.dtype()));
    });
  }
  return {loss, grads};
}

std::pair<LossOutput, ParamMap> TrainStep::sharded_loss_and_grads(const Batch& batch,
                                                                  const mx::array& key,
                                                                  int shards) {
  // Note [Row shards on the CPU] in row_shards.cpp.
  sync_masters();
  mx::array keys = mx::random::split(key, shards);  // (shards, 2)
  std::vector<mx::array> ready = masters_.arrays();
  for (const auto& [name, value] : model_.parameters()) ready.push_back(value);
  ready.push_back(keys);
  evaluate(ready);
  const size_t n_grads = names_.size();
  const uint64_t checkpointed_before = nn::checkpointed_calls();
  std::vector<mx::array> sums = row_shards_.sum(
      batch, shards,
      [&](const Batch& rows, int i) {
        mx::array shard_key = mx::reshape(mx::slice(keys, {i, 0}, {i + 1, 2}), {2});
        std::lock_guard lock(trace_mutex_);
        auto [loss, grads] = traced_loss_and_grads(rows, shard_key);
        std::vector<mx::array> out;
        for (const auto& g : grads.arrays()) out.push_back(mx::astype(g, mx::float32));
        out.push_back(loss.loss_sum);
        out.push_back(loss.tokens);
        return out;
      },
      paced_shards_);
  checkpointed_ = checkpointed_ || nn::checkpointed_calls() != checkpointed_before;
  paced_shards_ = !checkpointed_;
  LossOutput loss{sums[n_grads], sums[n_grads + 1]};
  sums.erase(sums.begin() + n_grads, sums.end());
  return {loss, ParamMap::zip(names_, sums)};
}

std::pair<LossOutput, ParamMap> TrainStep::traced_loss_and_grads(const Batch& batch,
                                                                 const mx::array& key) {
  float scale = scaler_ ? scaler_->scale() : 1.0f;
  std::vector<mx::array> inputs;  // Note [Master weights]: the working copies
  for (const auto& name : names_) inputs.push_back(working_.at(name));
  inputs.push_back(key);
  inputs.push_back(mx::array(scale));
  inputs.insert(inputs.end(), batch.begin(), batch.end());
  std::vector<mx::array> outputs = traced_(inputs);
  // Tracing left placeholders in the model; put the real arrays back.
  model_.update(working_);
  nn::reseed_dropout(model_, key);
  LossOutput loss{outputs[2], outputs[1]};
  return {loss, ParamMap::zip(names_, {outputs.begin() + 3, outputs.end()})};
}

// Note [Sharded optimizer state]
// Full fine-tuning keeps two f32 moments a parameter: with N ranks each rank keeps the
// moments of about 1/N of the parameters (whole tensors, assigned largest first to the rank
// with the fewest elements so far, the same on every rank), updates those with the summed
// gradients, and contributes zeros for the others; one sum across ranks then gives every
// rank all the updated parameters, exactly, since x + 0 == x. A checkpoint holds the whole
// state, each rank adding zeros for the moments it does not keep, so it loads with any
// number of ranks, sharded or not.
bool TrainStep::sharded() const {
  return config_.shard_optimizer_state && config_.parallel && !config_.parallel->alone();
}

const std::vector<bool>& TrainStep::owned() {
  if (owned_.size() == names_.size()) return owned_;
  owned_.assign(names_.size(), true);
  if (!sharded()) return owned_;
  std::vector<size_t> order(names_.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return masters_.at(names_[a]).size() > masters_.at(names_[b]).size();
  });
  std::vector<size_t> load(config_.parallel->size(), 0);
  for (size_t i : order) {
    const size_t rank = std::min_element(load.begin(), load.end()) - load.begin();
    load[rank] += masters_.at(names_[i]).size();
    owned_[i] = static_cast<int>(rank) == config_.parallel->rank();
  }
  return owned_;
}

ParamMap TrainStep::optimizer_state() {
  ParamMap state = optimizer_.state();
  if (!sharded()) return state;
  sync_masters();
  ParamMap whole;
  for (size_t i = 0; i < names_.size(); ++i) {
    ParamMap zeros = optimizer_.zero_state(names_[i], masters_.at(names_[i]).shape());
    for (const auto& [key, zero] : zeros) whole.set(key, owned()[i] ? state.at(key) : zero);
  }
  std::vector<mx::array> summed = config_.parallel->sum(whole.arrays());
  const std::vector<std::string> keys = whole.names();
  ParamMap out;
  for (size_t i = 0; i < keys.size(); ++i)
    out.set(keys[i], mx::astype(summed[i], optimizer_.state_dtype()));
  out.set("step", state.at("step"));
  evaluate(out.arrays());
  return out;
}

void TrainStep::load_optimizer_state(const ParamMap& state) {
  if (!sharded()) return optimizer_.load_state(state);
  sync_masters();
  std::set<std::string> mine;
  for (size_t i = 0; i < names_.size(); ++i)
    if (owned()[i]) mine.insert(names_[i]);
  ParamMap kept;
  for (const auto& [key, value] : state) {
    const size_t dot = key.rfind('.');
    if (key == "step" || (dot != std::string::npos && mine.count(key.substr(0, dot))))
      kept.set(key, value);
  }
  optimizer_.load_state(kept);
}

StepResult TrainStep::run(const std::vector<Batch>& micro_batches,
                          const std::vector<mx::array>& keys) {
  FT_CHECK(!micro_batches.empty(), "train", "a step needs at least one micro-batch");
  FT_CHECK(keys.size() == micro_batches.size(), "train", "one random key per micro-batch");
  StepResult result;
  result.loss_scale = scaler_ ? scaler_->scale() : 1.0f;
  result.learning_rate = optimizer_.learning_rate();
  std::optional<ParamMap> grad_sum;
  mx::array loss_sum = mx::array(0.0f), tokens = mx::array(0.0f);
  for (size_t i = 0; i < micro_batches.size(); ++i) {
    int shards = batch_row_shards(micro_batches[i], config_.row_shards);
    if (shards == 1) sync_masters();
    // Gradients of the scaled loss sum: Note [One pass over the gradients].
    auto [loss, grads] = shards > 1 ? sharded_loss_and_grads(micro_batches[i], keys[i], shards)
                                    : traced_loss_and_grads(micro_batches[i], keys[i]);
    loss_sum = loss_sum + loss.loss_sum;
    tokens = tokens + mx::astype(loss.tokens, mx::float32);
    // Several micro-batches add up in f32 (Note [Master weights]).
    if (micro_batches.size() > 1 && !grad_sum)
      grads = tree_map(grads, [](const mx::array& g) { return mx::astype(g, mx::float32); });
    grad_sum = grad_sum ? tree_map(*grad_sum, grads,
                                   [](const mx::array& a, const mx::array& b) { return a + b; })
                        : grads;
    // Evaluating here keeps one micro-batch's activations alive at a time.
    if (micro_batches.size() > 1) {
      std::vector<mx::array> pending = grad_sum->arrays();
      pending.push_back(loss_sum);
      pending.push_back(tokens);
      evaluate(pending);
    }
  }
  if (config_.parallel && !config_.parallel->alone()) {
    // Note [Data parallelism]: the global batch's sums, on every rank.
    std::vector<mx::array> sums = grad_sum->arrays();
    sums.push_back(loss_sum);
    sums.push_back(tokens);
    sums = config_.parallel->sum(sums);
    tokens = sums.back();
    sums.pop_back();
    loss_sum = sums.back();
    sums.pop_back();
    grad_sum = ParamMap::zip(grad_sum->names(), sums);
  }
  mx::array denominator = mx::maximum(tokens, mx::array(1.0f));
  mx::array mean_loss = loss_sum / denominator;
  // Note [One pass over the gradients]: the raw sums stay as they are; the optimizer's
  // kernel multiplies them by factor, and the norm is the raw norm times it.
  const ParamMap& grads = *grad_sum;
  mx::array factor = mx::array(1.0f / result.loss_scale) / denominator;
  auto finish = [&](const mx::array& norm, std::vector<mx::array> outputs) {
    outputs.push_back(mean_loss);
    outputs.push_back(tokens);
    outputs.push_back(norm);
    evaluate(outputs);
    result.loss = mean_loss.item<float>();
    result.tokens = tokens.item<float>();
    result.grad_norm = norm.item<float>();
    return result;
  };
  if (scaler_) {
    mx::array finite = all_finite(grads);
    std::vector<mx::array> pending = grads.arrays();
    pending.push_back(finite);
    evaluate(pending);
    bool ok = finite.item<bool>();
    scaler_->update(ok);
    if (!ok) {
      result.skipped = true;
      return finish(global_norm(grads) * factor, {});
    }
  }
  mx::array norm = global_norm(grads) * factor;
  if (config_.max_grad_norm) factor = factor * clip_coefficient(norm, *config_.max_grad_norm);
  if (!sharded()) {
    set_masters(optimizer_.update(masters_, grads, factor));
  } else {
    // Note [Sharded optimizer state]
    ParamMap mine;
    for (size_t i = 0; i < names_.size(); ++i)
      if (owned()[i]) mine.set(names_[i], grads.at(names_[i]));
    ParamMap updated = optimizer_.update(masters_, mine, factor);
    std::vector<mx::array> parts;
    for (size_t i = 0; i < names_.size(); ++i) {
      const mx::array& value = updated.at(names_[i]);
      parts.push_back(owned()[i] ? value : mx::zeros_like(value));
    }
    parts = config_.parallel->sum(parts);
    for (size_t i = 0; i < names_.size(); ++i)
      updated.set(names_[i], mx::astype(parts[i], masters_.at(names_[i]).dtype()));
    set_masters(std::move(updated));
  }
  std::vector<mx::array> outputs = masters_.arrays();
  for (const auto& [name, value] : working_) outputs.push_back(value);
  for (const auto& [name, value] : optimizer_.state()) outputs.push_back(value);
  return finish(norm, std::move(outputs));
}

}  // namespace ft
