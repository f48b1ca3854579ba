// Internal: the optimizer families behind make_optimizer, and helpers they share.
#pragma once

#include <functional>
#include <initializer_list>
#include <memory>
#include <vector>

#include <mlx/array.h>
#include <mlx/compile.h>  // defines: compile
#include <mlx/device.h>   // defines: default_device
#include <mlx/ops.h>      // defines: operator*

#include "ft/train/optimizer.h"

namespace ft::detail {

// Each takes a config whose values make_optimizer has already checked.
std::unique_ptr<Optimizer> make_sgd(const OptimizerConfig& config);
std::unique_ptr<Optimizer> make_adam(const OptimizerConfig& config, bool decoupled);
std::unique_ptr<Optimizer> make_adafactor(const OptimizerConfig& config);
std::unique_ptr<Optimizer> make_lion(const OptimizerConfig& config);

using Rule = std::function<std::vector<mx::array>(const std::vector<mx::array>&)>;

// An update rule over inputs (param, grad, ...) in f32, compiled so that it takes the
// gradient in any float dtype and one more input at the end, the gradient factor of
// Optimizer::update: the gradient is cast to f32 and multiplied by the factor first, both
// fused into the rule's kernel.
//
// Note [Shapeless rules on a GPU]
// A shapeless compile traces a rule once for every parameter shape; on the CPU that saves
// a trace and a compiled kernel per shape. MLX's CUDA backend makes a slower kernel of a
// shapeless graph: with shapes fixed, AdamW over the Llama-3.2-1B shape's 1.24B
// parameters in full fine-tuning took 25 ms less per step (H100, `ft bench --method full`,
// 41,344 against 47,386 tokens/s). So rules are shapeless on the CPU only; a model has a
// handful of distinct parameter shapes.
inline Rule compile_rule(Rule rule, bool shapeless) {
  return mx::compile(
      [rule = std::move(rule)](const std::vector<mx::array>& in) {
        std::vector<mx::array> scaled(in.begin(), in.end() - 1);
        scaled[1] = mx::astype(scaled[1], mx::float32) * in.back();
        return rule(scaled);
      },
      shapeless && mx::default_device() == mx::Device::cpu);
}

// f32 scalars for step_scalars().
inline std::vector<mx::array> f32_scalars(std::initializer_list<double> values) {
  std::vector<mx::array> out;
  for (double v : values) out.push_back(mx::array(static_cast<float>(v)));
  return out;
}

}  // namespace ft::detail
