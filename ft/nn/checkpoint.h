// Gradient checkpointing of a module's forward.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include <mlx/array.h>

#include "ft/nn/module.h"

namespace ft::nn {

using ArrayFn = std::function<std::vector<mx::array>(const std::vector<mx::array>&)>;

// `fn` (which runs `module`) without keeping its intermediate activations: they are
// recomputed in the backward pass. The module's trainable parameters become explicit
// inputs of the checkpointed function so their gradients flow; the returned function
// reads them from the module at each call.
ArrayFn checkpoint(Module& module, ArrayFn fn);

// How many times, in this process, a function checkpoint() returned has been called: once
// per trace when compiled, once per call otherwise. A caller compares it before and after
// building a graph to tell whether the graph recomputes activations.
uint64_t checkpointed_calls();

}  // namespace ft::nn
