// Optimizers: SGD, Adam, AdamW, Adafactor and Lion over ParamMaps.
//
// An optimizer maps (params, grads) to new params and keeps its state (moments, the
// step count) as a ParamMap, so a checkpoint saves it like any other tensors:
//   "model.layers.0.q_proj.weight.exp_avg", ..., "step".
// The update of each parameter is a pure function of arrays compiled with
// mx::compile so its elementwise ops fuse; update() builds a lazy graph and never
// evaluates, so a training step evaluates params, state and loss together.
//
// update() keeps the step count and the learning rate on the host and passes them
// to the compiled rules as scalar arrays: call it outside any function you compile
// yourself.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <mlx/array.h>  // defines: mlx::core::array, Shape

#include "ft/core/param_map.h"
#include "ft/train/schedule.h"

namespace ft {

// Hyper-parameters for make_optimizer. Unset optional fields take each optimizer's
// usual default (noted per field); fields an optimizer does not use are ignored.
struct OptimizerConfig {
  std::string name = "adamw";  // sgd | adam | adamw | adafactor | lion
  float learning_rate = 1e-5f;
  // When set, the rate of update k (counting from 0) is schedule(k) and
  // learning_rate is ignored.
  std::optional<Schedule> schedule;
  // sgd, adam: L2 added to the gradient; adamw, lion, adafactor: decoupled.
  // Default 0.01 for adamw, 0 otherwise.
  std::optional<float> weight_decay;
  // adam/adamw 0.9, lion 0.9; adafactor keeps a first moment only when beta1 is set.
  std::optional<float> beta1;
  // adam/adamw 0.999, lion 0.99.
  std::optional<float> beta2;
  float eps = 1e-8f;  // adam/adamw, added outside the square root
  // The dtype of the moments: float32, or bfloat16 for half their memory (Note [Optimizer
  // state in 16 bits] in optimizer.cpp). The update's arithmetic is f32 either way.
  mx::Dtype state_dtype = mx::float32;

  // sgd (PyTorch semantics).
  float momentum = 0.0f;
  float dampening = 0.0f;
  bool nesterov = false;

  // adafactor: the algorithm and option names of Hugging Face transformers'
  // Adafactor. relative_step defaults to false here (transformers: true) because ft
  // always has a learning rate; with relative_step the rate is
  // min(1e-2, 1/sqrt(step)) (min(1e-6 * step, 1/sqrt(step)) with warmup_init) and
  // learning_rate and schedule must be left alone.
  float eps_sq = 1e-30f;    // transformers' eps[0], added to grad^2
  float eps_scale = 1e-3f;  // transformers' eps[1], the least parameter scale
  float clip_threshold = 1.0f;
  float decay_rate = -0.8f;  // beta2 at step t is 1 - t^decay_rate
  bool relative_step = false;
  bool scale_parameter = true;
  bool warmup_init = false;
};

class Optimizer {
 public:
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;
  virtual ~Optimizer() = default;

  // "sgd", "adam", ...
  const std::string& name() const { return name_; }

  // New values for the parameters named in grads (a subset of params, same shapes);
  // the others are returned unchanged. Parameters and gradients of any float dtype are
  // cast to f32 inside the update's kernel; the math runs in f32 and each result has its
  // parameter's dtype. State for a
  // parameter seen for the first time starts at zero. Advances step() by one.
  // grad_factor (a scalar, lazy) multiplies every gradient inside the rule's compiled
  // kernel: a normalisation or clipping of the gradients costs no pass of its own.
  ParamMap update(const ParamMap& params, const ParamMap& grads,
                  const std::optional<mx::array>& grad_factor = std::nullopt);

  // Creates zero state for these parameters now rather than at their first update.
  void init(const ParamMap& params);
  // The state entries ("<param>.<slot>") a parameter of this name and shape has, as zeros
  // of state_dtype(), in the order state() lists them; the optimizer is not changed.
  ParamMap zero_state(const std::string& param, const mx::Shape& shape) const;

  // The rate the next update() will use (call it before update() to log a step).
  // For adafactor this is the step size before its per-parameter RMS scaling.
  float learning_rate() const;
  // Updates done so far.
  int64_t step() const { return step_; }

  // Moments per parameter ("<param>.<slot>", in state_dtype()) and "step" (int64 scalar).
  ParamMap state() const;
  mx::Dtype state_dtype() const { return state_dtype_; }
  // Replaces the state with a saved one. Throws ft::Error when "step" is missing,
  // a name is not "<param>.<slot>" with a slot this optimizer keeps, or, when this
  // optimizer already has state (init or updates), the names or shapes differ from
  // it. Loaded moments are cast to state_dtype(). Shapes of state loaded into a fresh optimizer are checked against each
  // parameter at its first update, and a parameter without state is then an error.
  void load_state(const ParamMap& state);

 protected:
  struct Slot {
    std::string name;  // "exp_avg"
    mx::Shape shape;
  };

  // Takes the learning rate, schedule and state dtype of config.
  Optimizer(std::string name, const OptimizerConfig& config);

  // The state this optimizer keeps for a parameter of this shape.
  virtual std::vector<Slot> slots(const mx::Shape& param_shape) const = 0;
  // Every slot name the optimizer can keep, for checking loaded names.
  virtual std::vector<std::string> slot_names() const = 0;
  // Scalars shared by all parameters in update number `step` (from 1) at rate lr,
  // computed on the host in double, as PyTorch does, and passed as f32 arrays.
  virtual std::vector<mx::array> step_scalars(int64_t step, double lr) const = 0;
  // {new param, new slots...} from a param, grad and slots (in slots() order) of any float
  // dtype and step_scalars(); lazy. The rule's inputs end with grad_factor;
  // detail::compile_rule casts to f32, applies the factor and casts the results back.
  virtual std::vector<mx::array> apply(const mx::array& param, const mx::array& grad,
                                       const std::vector<mx::array>& slots,
                                       const std::vector<mx::array>& scalars,
                                       const mx::array& grad_factor) = 0;
  // The rate of update number `step` (from 1).
  virtual double rate(int64_t step) const;

 private:
  std::vector<mx::array> slot_values(const std::string& param, const mx::Shape& shape);

  std::string name_;
  float learning_rate_;
  std::optional<Schedule> schedule_;
  mx::Dtype state_dtype_;
  int64_t step_ = 0;
  ParamMap state_;       // "<param>.<slot>" -> array of state_dtype_, without "step"
  bool loaded_ = false;  // state came from load_state: no parameter may start fresh
};

// Builds the optimizer a config names. Throws ft::Error for an unknown name (listing
// the known ones), a non-positive learning rate, a negative weight decay, betas
// outside [0, 1) and other values the optimizer cannot use.
std::unique_ptr<Optimizer> make_optimizer(const OptimizerConfig& config);
// The names make_optimizer accepts.
const std::vector<std::string>& optimizer_names();

}  // namespace ft
