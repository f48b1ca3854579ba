#include "ft/train/schedule.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "ft/core/error.h"

namespace ft {

namespace {

constexpr const char* kPlace = "schedule";

void check_finite(double v, const char* what) {
  FT_CHECK(std::isfinite(v), kPlace, what, " must be finite, got ", v);
}

void check_positive(double v, const char* what) {
  FT_CHECK(std::isfinite(v) && v > 0.0f, kPlace, what, " must be positive, got ", v);
}

void check_non_negative(double v, const char* what) {
  FT_CHECK(std::isfinite(v) && v >= 0.0f, kPlace, what, " must be >= 0, got ", v);
}

void check_steps(int64_t steps, const char* what) {
  FT_CHECK(steps > 0, kPlace, what, " must be positive, got ", steps);
}

std::string join_names(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

}  // namespace

Schedule::Schedule(double value) {
  check_finite(value, "constant value");
  const double v = value;
  fn_ = [v](int64_t) { return v; };
}

Schedule constant_schedule(double value) {
  return Schedule(value);
}

Schedule linear_schedule(double init, double end, int64_t steps) {
  check_finite(init, "initial value");
  check_finite(end, "end value");
  check_steps(steps, "linear schedule length");
  const double a = init, b = end, n = static_cast<double>(steps);
  return Schedule([a, b, n, steps](int64_t step) {
    const double t = static_cast<double>(std::clamp<int64_t>(step, 0, steps));
    return a + (b - a) * t / n;
  });
}

Schedule linear_warmup(double peak, int64_t warmup_steps, double init) {
  check_positive(peak, "peak learning rate");
  check_non_negative(init, "warmup initial value");
  check_steps(warmup_steps, "warmup steps");
  return linear_schedule(init, peak, warmup_steps);
}

Schedule cosine_decay(double init, int64_t decay_steps, double end) {
  check_positive(init, "initial learning rate");
  check_non_negative(end, "end value");
  check_steps(decay_steps, "cosine decay steps");
  const double a = init, b = end, n = static_cast<double>(decay_steps);
  return Schedule([a, b, n, decay_steps](int64_t step) {
    const double t = static_cast<double>(std::clamp<int64_t>(step, 0, decay_steps));
    return b + (a - b) * 0.5 * (1.0 + std::cos(std::numbers::pi * t / n));
  });
}

Schedule step_decay(double init, double rate, int64_t step_size) {
  check_positive(init, "initial learning rate");
  check_positive(rate, "decay rate");
  check_steps(step_size, "step size");
  const double a = init, r = rate;
  return Schedule([a, r, step_size](int64_t step) {
    return a * std::pow(r, static_cast<double>(std::max<int64_t>(step, 0) / step_size));
  });
}

Schedule exponential_decay(double init, double rate) {
  check_positive(init, "initial learning rate");
  check_positive(rate, "decay rate");
  const double a = init, r = rate;
  return Schedule([a, r](int64_t step) {
    return a * std::pow(r, static_cast<double>(std::max<int64_t>(step, 0)));
  });
}

Schedule join_schedules(std::vector<Schedule> schedules, std::vector<int64_t> boundaries) {
  FT_CHECK(!schedules.empty(), kPlace, "join_schedules needs at least one schedule");
  FT_CHECK(boundaries.size() + 1 == schedules.size(), kPlace, "join_schedules needs ",
           schedules.size() - 1, " boundaries for ", schedules.size(), " schedules, got ",
           boundaries.size());
  for (size_t i = 0; i < boundaries.size(); ++i) {
    FT_CHECK(boundaries[i] > (i == 0 ? 0 : boundaries[i - 1]), kPlace,
             "join_schedules boundaries must be positive and strictly increasing, got ",
             boundaries[i], " at position ", i);
  }
  return Schedule(
      [schedules = std::move(schedules), boundaries = std::move(boundaries)](int64_t step) {
        // The number of boundaries at or before step picks the schedule.
        const size_t i = static_cast<size_t>(
            std::upper_bound(boundaries.begin(), boundaries.end(), step) - boundaries.begin());
        const int64_t start = i == 0 ? 0 : boundaries[i - 1];
        return schedules[i].value(step - start);
      });
}

Schedule warmup_cosine(double peak, int64_t warmup_steps, int64_t total_steps, double end,
                       double init) {
  FT_CHECK(total_steps > warmup_steps, kPlace, "total steps (", total_steps,
           ") must exceed warmup steps (", warmup_steps, ")");
  FT_CHECK(warmup_steps >= 0, kPlace, "warmup steps must be >= 0, got ", warmup_steps);
  Schedule decay = cosine_decay(peak, total_steps - warmup_steps, end);
  if (warmup_steps == 0) return decay;
  return join_schedules({linear_warmup(peak, warmup_steps, init), decay}, {warmup_steps});
}

const std::vector<std::string>& schedule_names() {
  static const std::vector<std::string> names = {"constant", "linear_decay", "cosine_decay",
                                                 "step_decay", "exponential_decay"};
  return names;
}

Schedule make_schedule(const ScheduleConfig& c) {
  FT_CHECK(c.warmup_steps >= 0, kPlace, "warmup_steps must be >= 0, got ", c.warmup_steps);
  check_positive(c.learning_rate, "learning_rate");
  Schedule main = 0.0;
  if (c.name == "constant") {
    main = constant_schedule(c.learning_rate);
  } else if (c.name == "linear_decay") {
    check_non_negative(c.end_value, "end_value");
    main = linear_schedule(c.learning_rate, c.end_value, c.decay_steps);
  } else if (c.name == "cosine_decay") {
    main = cosine_decay(c.learning_rate, c.decay_steps, c.end_value);
  } else if (c.name == "step_decay") {
    main = step_decay(c.learning_rate, c.decay_rate, c.step_size);
  } else if (c.name == "exponential_decay") {
    main = exponential_decay(c.learning_rate, c.decay_rate);
  } else {
    throw Error(kPlace,
                "unknown schedule '" + c.name + "'; known: " + join_names(schedule_names()));
  }
  if (c.warmup_steps == 0) return main;
  return join_schedules({linear_warmup(c.learning_rate, c.warmup_steps, c.warmup_init), main},
                        {c.warmup_steps});
}

}  // namespace ft
