// Learning-rate schedules: a value for every step, computed on the host.
//
// Steps count from 0: the first optimizer update uses schedule(0). Each builder
// checks its arguments and throws ft::Error("schedule", ...) on bad values.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace ft {

class Schedule {
 public:
  // A constant rate.
  Schedule(double value);  // NOLINT(google-explicit-constructor): a number is a schedule
  explicit Schedule(std::function<double(int64_t)> fn) : fn_(std::move(fn)) {}

  // The rate at step (>= 0), rounded to float.
  float operator()(int64_t step) const { return static_cast<float>(fn_(step)); }
  // The same in double, for callers that keep host arithmetic in double.
  double value(int64_t step) const { return fn_(step); }

 private:
  std::function<double(int64_t)> fn_;
};

Schedule constant_schedule(double value);
// init + (end - init) * min(step, steps) / steps, then end.
Schedule linear_schedule(double init, double end, int64_t steps);
// From init (default 0) up to peak over warmup_steps; peak from step warmup_steps on.
Schedule linear_warmup(double peak, int64_t warmup_steps, double init = 0.0);
// end + (init - end) * (1 + cos(pi * min(step, decay_steps) / decay_steps)) / 2.
Schedule cosine_decay(double init, int64_t decay_steps, double end = 0.0);
// init * rate^floor(step / step_size)  (PyTorch's StepLR).
Schedule step_decay(double init, double rate, int64_t step_size);
// init * rate^step  (PyTorch's ExponentialLR).
Schedule exponential_decay(double init, double rate);
// Schedule i runs from boundaries[i-1] (0 for the first) with its own step counting
// from 0 there; boundaries.size() == schedules.size() - 1, strictly increasing, > 0.
Schedule join_schedules(std::vector<Schedule> schedules, std::vector<int64_t> boundaries);
// Linear warmup from init to peak over warmup_steps, then cosine decay to end at
// total_steps (transformers' get_cosine_schedule_with_warmup when init = end = 0).
Schedule warmup_cosine(double peak, int64_t warmup_steps, int64_t total_steps, double end = 0.0,
                       double init = 0.0);

// A schedule described by a config file. Which fields apply depends on the name:
//   constant           learning_rate
//   linear_decay       learning_rate -> end_value over decay_steps
//   cosine_decay       learning_rate -> end_value over decay_steps
//   step_decay         learning_rate * decay_rate every step_size steps
//   exponential_decay  learning_rate * decay_rate^step
// With warmup_steps > 0 any of them is preceded by a linear warmup from warmup_init
// to learning_rate, and the named schedule starts counting after the warmup.
struct ScheduleConfig {
  std::string name = "constant";
  double learning_rate = 1e-5;
  double end_value = 0.0;
  int64_t decay_steps = 0;
  int64_t step_size = 0;
  double decay_rate = 1.0;
  int64_t warmup_steps = 0;
  double warmup_init = 0.0;
};

Schedule make_schedule(const ScheduleConfig& config);
// The names make_schedule accepts.
const std::vector<std::string>& schedule_names();

}  // namespace ft
