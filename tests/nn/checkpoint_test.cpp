// Gradient checkpointing (nn::checkpoint): the same gradients as without it, and a peak that
// holds each layer's input and the rebuilt activations of a few layers, not every layer's.
#include <gtest/gtest.h>

#include <memory>

#include <mlx/memory.h>
#include <mlx/ops.h>
#include <mlx/random.h>
#include <mlx/transforms.h>

#include "ft/nn/checkpoint.h"
#include "ft/nn/module.h"
#include "tests/test_util.h"

namespace {

namespace mx = mlx::core;

// A layer whose forward keeps several activations of its input's size for the backward.
class Wide : public ft::nn::Module {
 public:
  explicit Wide(int dim, int seed)
      : weight_(mx::random::normal({dim, dim}, mx::float32, 0, 0.05f, mx::random::key(seed))) {
    register_parameter("weight", &weight_);
  }
  mx::array operator()(const mx::array& x) const {
    mx::array h = mx::tanh(mx::matmul(x, weight_));
    mx::array g = mx::sigmoid(h) * x;
    return mx::sin(g) + h * g;
  }

 private:
  mx::array weight_;
};

struct Chain {
  std::vector<std::shared_ptr<Wide>> layers;
  std::vector<ft::nn::ArrayFn> forward;
};

// 16 layers, each through nn::checkpoint or not.
enum class Mode { none, checkpointed };

Chain chain(Mode mode, int dim) {
  Chain c;
  for (int i = 0; i < 16; ++i) {
    auto layer = std::make_shared<Wide>(dim, i);
    ft::nn::ArrayFn fn = [layer](const std::vector<mx::array>& in) {
      return std::vector<mx::array>{(*layer)(in[0])};
    };
    if (mode == Mode::checkpointed) fn = ft::nn::checkpoint(*layer, fn);
    c.layers.push_back(layer);
    c.forward.push_back(fn);
  }
  return c;
}

// Gradients of sum(chain(x)) w.r.t. every layer's weight, and the allocator's peak while
// evaluating them.
std::pair<std::vector<mx::array>, size_t> grads_and_peak(Mode mode, const mx::array& x) {
  Chain c = chain(mode, x.shape(1));
  std::vector<mx::array> weights;
  for (auto& l : c.layers) weights.push_back(l->trainable_parameters().at("weight"));
  auto loss = [&](const std::vector<mx::array>& w) {
    for (size_t i = 0; i < w.size(); ++i) c.layers[i]->update({{"weight", w[i]}});
    mx::array h = x;
    for (auto& f : c.forward) h = f({h})[0];
    return std::vector<mx::array>{mx::sum(h)};
  };
  std::vector<int> argnums;
  for (size_t i = 0; i < weights.size(); ++i) argnums.push_back(int(i));
  auto [values, grads] = mx::value_and_grad(loss, argnums)(weights);
  mx::synchronize();
  mx::clear_cache();
  mx::reset_peak_memory();
  mx::eval(grads);
  return {grads, mx::get_peak_memory()};
}

// MLX evaluates ahead of the kernels it has queued, so the allocator's peak includes
// buffers whose last reader has not run yet. A memory limit makes the evaluation wait for
// queued work above it: the peak is then what the graph keeps alive. Measured: 337 MiB
// without checkpointing, 158 with (16 layer inputs of 4 MiB and the rebuilt activations
// of a few layers at a time, in MLX's evaluation order).
TEST(Checkpoint, SameGradientsAtAFractionOfThePeak) {
  ft::testing::OnCpu cpu;
  const int tokens = 8192, dim = 128;  // 4 MiB per activation
  mx::array x = mx::random::normal({tokens, dim}, mx::float32, 0, 1, mx::random::key(1));
  mx::eval(x);
  const size_t limit = mx::set_memory_limit(size_t(32) << 20);
  auto [plain, plain_peak] = grads_and_peak(Mode::none, x);
  auto [rebuilt, rebuilt_peak] = grads_and_peak(Mode::checkpointed, x);
  mx::set_memory_limit(limit);
  for (size_t i = 0; i < plain.size(); ++i)
    EXPECT_TRUE(mx::array_equal(rebuilt[i], plain[i]).item<bool>()) << i;
  EXPECT_LT(double(rebuilt_peak), 0.75 * double(plain_peak))
      << "peak MiB: without checkpointing " << plain_peak / 1048576.0 << ", with "
      << rebuilt_peak / 1048576.0;
}

}  // namespace
