// Loss and gradients of a layer's trainable parameters, for the LoRA tests.
#pragma once

#include <numeric>
#include <utility>

#include <mlx/ops.h>
#include <mlx/transforms.h>

#include "ft/core/param_map.h"
#include "ft/nn/module.h"

namespace ft_test {

namespace mx = mlx::core;

// d/dθ sum(layer(x) * upstream) for every trainable θ, by mx::value_and_grad.
inline std::pair<float, ft::ParamMap> loss_and_grads(ft::nn::Layer& layer, const mx::array& x,
                                                     const mx::array& upstream) {
  auto params = layer.trainable_parameters();
  auto names = params.names();
  std::vector<int> argnums(names.size());
  std::iota(argnums.begin(), argnums.end(), 0);
  auto fn = [&](const std::vector<mx::array>& arrays) {
    layer.update(ft::ParamMap::zip(names, arrays));
    return mx::sum(mx::multiply(layer(x), upstream));
  };
  auto [value, grads] = mx::value_and_grad(fn, argnums)(params.arrays());
  layer.update(params);  // the traced values must not stay in the layer
  return {value.item<float>(), ft::ParamMap::zip(names, grads)};
}

}  // namespace ft_test
