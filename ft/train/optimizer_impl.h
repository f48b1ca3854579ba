// Internal: the optimizer families behind make_optimizer, and helpers they share.
#pragma once

#include <initializer_list>
#include <memory>
#include <vector>

#include <mlx/array.h>

#include "ft/train/optimizer.h"

namespace ft::detail {

// Each takes a config whose values make_optimizer has already checked.
std::unique_ptr<Optimizer> make_sgd(const OptimizerConfig& config);
std::unique_ptr<Optimizer> make_adam(const OptimizerConfig& config, bool decoupled);
std::unique_ptr<Optimizer> make_adafactor(const OptimizerConfig& config);
std::unique_ptr<Optimizer> make_lion(const OptimizerConfig& config);

// f32 scalars for step_scalars().
inline std::vector<mx::array> f32_scalars(std::initializer_list<double> values) {
  std::vector<mx::array> out;
  for (double v : values) out.push_back(mx::array(static_cast<float>(v)));
  return out;
}

}  // namespace ft::detail
