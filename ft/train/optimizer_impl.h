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

// An update rule over inputs (param, grad, slots..., scalars..., grad factor) in f32,
// compiled so that it takes the parameter, the gradient and the slots in any float dtype:
// they are cast to f32 and the gradient multiplied by the factor (the last input, the
// gradient factor of Optimizer::update) inside the rule's kernel, and its outputs (param,
// slots...) are cast back to the dtypes those inputs came in (Note [Optimizer state in 16
// bits] in optimizer.cpp).
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
        std::vector<mx::array> f32(in.begin(), in.end() - 1);
        for (auto& a : f32) a = mx::astype(a, mx::float32);  // no op for f32
        f32[1] = f32[1] * in.back();
        std::vector<mx::array> out = rule(f32);
        // out[0] is the parameter's (in[0]), out[j] the slot that came in as in[j + 1].
        for (size_t j = 0; j < out.size(); ++j)
          out[j] = mx::astype(out[j], in[j == 0 ? 0 : j + 1].dtype());
        return out;
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
