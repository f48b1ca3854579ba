// What ft's CPU cross-entropy primitives share (cpu/softmax_cross_entropy.h,
// cpu/head_cross_entropy.h): their options, and the parts of an mx::Primitive that follow
// from them.
#pragma once

#include <vector>

#include <mlx/primitives.h>

#include "ft/core/error.h"

namespace ft::kernels::cpu {

namespace mx = mlx::core;

struct CrossEntropyKernelOptions {
  int ignore_index = -100;
  float label_smoothing = 0.0f;  // s in [0, 1]
  bool with_grad = true;         // also return the gradient w.r.t. the first input
};

// Outputs: the per-row losses (one per row of inputs[0]), then, with with_grad, the gradient
// shaped like inputs[0]. CPU streams only; a subclass gives eval_cpu and name.
class CrossEntropyPrimitive : public mx::Primitive {
 public:
  CrossEntropyPrimitive(mx::Stream stream, const CrossEntropyKernelOptions& options,
                        const char* place)
      : mx::Primitive(stream), options_(options), place_(place) {}

  void eval_gpu(const std::vector<mx::array>&, std::vector<mx::array>&) override {
    throw Error(place_, "runs on the CPU only");
  }

  bool is_equivalent(const mx::Primitive& other) const override {
    const auto& o = static_cast<const CrossEntropyPrimitive&>(other);
    return options_.ignore_index == o.options_.ignore_index &&
           options_.label_smoothing == o.options_.label_smoothing &&
           options_.with_grad == o.options_.with_grad;
  }

  std::vector<mx::Shape> output_shapes(const std::vector<mx::array>& inputs) override {
    std::vector<mx::Shape> shapes{{inputs[0].shape(0)}};
    if (options_.with_grad) shapes.push_back(inputs[0].shape());
    return shapes;
  }

 protected:
  CrossEntropyKernelOptions options_;

 private:
  const char* place_;
};

}  // namespace ft::kernels::cpu
