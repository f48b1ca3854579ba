#include "ft/train/optimizer.h"

#include <cmath>

#include <mlx/ops.h>  // defines: zeros, astype

#include "ft/core/error.h"
#include "ft/train/optimizer_impl.h"

namespace ft {

namespace {

constexpr const char* kPlace = "optimizer";
constexpr const char* kStepKey = "step";

std::string shape_str(const mx::Shape& shape) {
  std::string out = "(";
  for (size_t i = 0; i < shape.size(); ++i) out += (i ? ", " : "") + std::to_string(shape[i]);
  return out + ")";
}

}  // namespace

// Note [Optimizer state in 16 bits]
// Adam's two f32 moments are 8 bytes per trained parameter: for full fine-tuning of a 1B
// model, 9.9 GB, the largest term of the step's memory. In bfloat16 they take half. The
// update reads them into f32, computes in f32 and rounds the new moments to bf16 inside
// the same kernel (detail::compile_rule), so the cost is the rounding of m and v, whose
// relative error of 2^-9 per step is far below the noise of the gradients they average;
// PyTorch keeps moments in the parameters' dtype the same way for a bf16 model. The
// parameters themselves keep f32 masters unless StepConfig::master_weights is off.
Optimizer::Optimizer(std::string name, const OptimizerConfig& config)
    : name_(std::move(name)),
      learning_rate_(config.learning_rate),
      schedule_(config.schedule),
      state_dtype_(config.state_dtype) {}

double Optimizer::rate(int64_t step) const {
  return schedule_ ? schedule_->value(step - 1) : static_cast<double>(learning_rate_);
}

float Optimizer::learning_rate() const {
  return static_cast<float>(rate(step_ + 1));
}

std::vector<mx::array> Optimizer::slot_values(const std::string& param, const mx::Shape& shape) {
  std::vector<Slot> wanted = slots(shape);
  std::vector<mx::array> out;
  out.reserve(wanted.size());
  bool any = false;
  for (const auto& s : wanted) any = any || state_.contains(param + "." + s.name);
  if (!any) {
    FT_CHECK(!loaded_ || wanted.empty(), kPlace, "the loaded state has no entry for parameter '",
             param, "'");
    for (const auto& s : wanted) out.push_back(mx::zeros(s.shape, state_dtype_));
    return out;
  }
  for (const auto& s : wanted) {
    const std::string key = param + "." + s.name;
    const mx::array* v = state_.find(key);
    FT_CHECK(v != nullptr, kPlace, "state has no '", key, "'");
    FT_CHECK(v->shape() == s.shape, kPlace, "state '", key, "' has shape ", shape_str(v->shape()),
             " but parameter '", param, "' of shape ", shape_str(shape), " needs ",
             shape_str(s.shape));
    out.push_back(*v);
  }
  return out;
}

ParamMap Optimizer::update(const ParamMap& params, const ParamMap& grads,
                           const std::optional<mx::array>& grad_factor) {
  // Every check runs before any state changes, so a failed update leaves none behind.
  std::vector<std::vector<mx::array>> slot_arrays;
  slot_arrays.reserve(grads.size());
  for (const auto& [name, grad] : grads) {
    const mx::array* param = params.find(name);
    FT_CHECK(param != nullptr, kPlace, "gradient for '", name, "', which is not a parameter");
    FT_CHECK(grad.shape() == param->shape(), kPlace, "gradient for '", name, "' has shape ",
             shape_str(grad.shape()), " but the parameter has ", shape_str(param->shape()));
    slot_arrays.push_back(slot_values(name, param->shape()));
  }
  const int64_t step = step_ + 1;
  const std::vector<mx::array> scalars = step_scalars(step, rate(step));
  // x * 1 == x exactly, so an update without a factor is unchanged by it.
  const mx::array factor = grad_factor ? mx::astype(*grad_factor, mx::float32) : mx::array(1.0f);
  ParamMap out = params;
  size_t i = 0;
  for (const auto& [name, grad] : grads) {
    const mx::array& param = params.at(name);
    // The rule casts to f32 and back itself (detail::compile_rule), inside its kernel.
    std::vector<mx::array> result = apply(param, grad, slot_arrays[i], scalars, factor);
    FT_ASSERT(result.size() == slot_arrays[i].size() + 1);
    out.set(name, result[0]);
    const std::vector<Slot> wanted = slots(param.shape());
    for (size_t j = 0; j < wanted.size(); ++j)
      state_.set(name + "." + wanted[j].name, result[j + 1]);
    ++i;
  }
  step_ = step;
  return out;
}

void Optimizer::init(const ParamMap& params) {
  for (const auto& [name, param] : params) {
    std::vector<mx::array> values = slot_values(name, param.shape());
    std::vector<Slot> wanted = slots(param.shape());
    for (size_t i = 0; i < wanted.size(); ++i) state_.set(name + "." + wanted[i].name, values[i]);
  }
}

ParamMap Optimizer::zero_state(const std::string& param, const mx::Shape& shape) const {
  ParamMap out;
  for (const Slot& slot : slots(shape))
    out.set(param + "." + slot.name, mx::zeros(slot.shape, state_dtype_));
  return out;
}

ParamMap Optimizer::state() const {
  ParamMap out = state_;
  out.set(kStepKey, mx::array(static_cast<int64_t>(step_)));
  return out;
}

void Optimizer::load_state(const ParamMap& state) {
  const mx::array* step = state.find(kStepKey);
  FT_CHECK(step != nullptr, kPlace, "state has no '", kStepKey, "' entry");
  FT_CHECK(step->ndim() == 0, kPlace, "state '", kStepKey, "' must be a scalar, got shape ",
           shape_str(step->shape()));
  const int64_t loaded_step = mx::astype(*step, mx::int64).item<int64_t>();
  FT_CHECK(loaded_step >= 0, kPlace, "state '", kStepKey, "' is negative: ", loaded_step);

  const std::vector<std::string> known = slot_names();
  ParamMap next;
  for (const auto& [key, value] : state) {
    if (key == kStepKey) continue;
    bool ok = false;
    for (const auto& slot : known) {
      const std::string suffix = "." + slot;
      ok = ok || (key.size() > suffix.size() &&
                  key.compare(key.size() - suffix.size(), suffix.size(), suffix) == 0);
    }
    if (!ok) {
      std::string names;
      for (const auto& s : known) names += (names.empty() ? "" : ", ") + s;
      throw Error(kPlace, "state entry '" + key + "' is not '<parameter>.<slot>' with a slot " +
                              name_ + " keeps (" + names + ")");
    }
    next.set(key, mx::astype(value, state_dtype_));
  }
  if (!state_.empty()) {
    for (const auto& [key, value] : state_) {
      const mx::array* v = next.find(key);
      FT_CHECK(v != nullptr, kPlace, "loaded state lacks '", key, "'");
      FT_CHECK(v->shape() == value.shape(), kPlace, "loaded state '", key, "' has shape ",
               shape_str(v->shape()), ", expected ", shape_str(value.shape()));
    }
    for (const auto& [key, value] : next)
      FT_CHECK(state_.contains(key), kPlace, "loaded state has unexpected entry '", key, "'");
  }
  state_ = std::move(next);
  step_ = loaded_step;
  // Before the first update every state is zero, so a parameter missing from a state of
  // step 0 (saved after steps that were all skipped for overflow) may start fresh.
  loaded_ = loaded_step > 0;
}

const std::vector<std::string>& optimizer_names() {
  static const std::vector<std::string> names = {"sgd", "adam", "adamw", "adafactor", "lion"};
  return names;
}

namespace {

void check_beta(const std::optional<float>& beta, const char* what) {
  if (beta)
    FT_CHECK(std::isfinite(*beta) && *beta >= 0.0f && *beta < 1.0f, kPlace, what,
             " must be in [0, 1), got ", *beta);
}

}  // namespace

std::unique_ptr<Optimizer> make_optimizer(const OptimizerConfig& c) {
  bool known = false;
  for (const auto& n : optimizer_names()) known = known || n == c.name;
  if (!known) {
    std::string names;
    for (const auto& n : optimizer_names()) names += (names.empty() ? "" : ", ") + n;
    throw Error(kPlace, "unknown optimizer '" + c.name + "'; known: " + names);
  }
  if (!c.schedule)
    FT_CHECK(std::isfinite(c.learning_rate) && c.learning_rate > 0.0f, kPlace,
             "learning rate must be positive, got ", c.learning_rate);
  if (c.weight_decay)
    FT_CHECK(std::isfinite(*c.weight_decay) && *c.weight_decay >= 0.0f, kPlace,
             "weight decay must be >= 0, got ", *c.weight_decay);
  check_beta(c.beta1, "beta1");
  check_beta(c.beta2, "beta2");
  FT_CHECK(c.state_dtype == mx::float32 || c.state_dtype == mx::bfloat16, kPlace,
           "optimizer state must be float32 or bfloat16");

  if (c.name == "sgd") {
    FT_CHECK(std::isfinite(c.momentum) && c.momentum >= 0.0f, kPlace, "momentum must be >= 0, got ",
             c.momentum);
    FT_CHECK(std::isfinite(c.dampening) && c.dampening >= 0.0f && c.dampening <= 1.0f, kPlace,
             "dampening must be in [0, 1], got ", c.dampening);
    FT_CHECK(!c.nesterov || (c.momentum > 0.0f && c.dampening == 0.0f), kPlace,
             "nesterov needs momentum > 0 and dampening 0");
    return detail::make_sgd(c);
  }
  if (c.name == "adam" || c.name == "adamw") {
    FT_CHECK(std::isfinite(c.eps) && c.eps > 0.0f, kPlace, "eps must be positive, got ", c.eps);
    return detail::make_adam(c, c.name == "adamw");
  }
  if (c.name == "adafactor") {
    FT_CHECK(std::isfinite(c.eps_sq) && c.eps_sq >= 0.0f, kPlace, "eps_sq must be >= 0, got ",
             c.eps_sq);
    FT_CHECK(std::isfinite(c.eps_scale) && c.eps_scale >= 0.0f, kPlace,
             "eps_scale must be >= 0, got ", c.eps_scale);
    FT_CHECK(std::isfinite(c.clip_threshold) && c.clip_threshold > 0.0f, kPlace,
             "clip_threshold must be positive, got ", c.clip_threshold);
    FT_CHECK(std::isfinite(c.decay_rate) && c.decay_rate <= 0.0f, kPlace,
             "decay_rate must be <= 0, got ", c.decay_rate);
    FT_CHECK(!c.warmup_init || c.relative_step, kPlace, "warmup_init needs relative_step");
    FT_CHECK(!c.relative_step || !c.schedule, kPlace,
             "relative_step sets its own rate; a schedule cannot be combined with it");
    return detail::make_adafactor(c);
  }
  return detail::make_lion(c);
}

}  // namespace ft
