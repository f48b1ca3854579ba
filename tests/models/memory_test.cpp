// The training-memory estimate against the allocator's measured peak of real steps.
#include <gtest/gtest.h>

#include <cmath>

#include <mlx/memory.h>
#include <mlx/ops.h>
#include <mlx/random.h>
#include <mlx/transforms.h>

#include "ft/core/error.h"
#include "ft/core/random.h"
#include "ft/kernels/cpu/head_cross_entropy.h"
#include "ft/kernels/linear_cross_entropy.h"
#include "ft/models/memory.h"
#include "ft/models/registry.h"
#include "ft/nn/lora.h"
#include "ft/train/losses.h"
#include "ft/train/optimizer.h"
#include "ft/train/step.h"
#include "tests/test_util.h"

namespace {

namespace mx = mlx::core;
using ft::models::Config;
using ft::models::CausalLM;

Config small_config() {
  Config c;
  c.vocab_size = 8000;
  c.hidden_size = 256;
  c.intermediate_size = 688;
  c.num_hidden_layers = 4;
  c.num_attention_heads = 8;
  c.num_key_value_heads = 4;
  c.tie_word_embeddings = true;
  return c;
}

struct Case {
  bool lora;
  int batch, length;
  bool checkpoint;
};

// Row shards (on the CPU) of the measured steps: fixed, so the figures do not depend on the
// machine's core count. Under gradient checkpointing the peak depends on them: MLX's eval
// order (MLX_BFS_MAX_WIDTH, default 20) rebuilds several checkpointed layers ahead of their
// backward; measured at batch 4 x 256, one shard held about 3.5 layers' activations at once,
// two shards about two, four about one (and one shard with MLX_BFS_MAX_WIDTH=1 about one).
constexpr int kShards = 2;

// Peak bytes the allocator saw over two training steps, less what was live before.
double measured_peak(CausalLM& model, const Case& k) {
  ft::LossFn loss = [k](ft::nn::Module& m, const ft::Batch& b, const mx::array&) {
    auto& lm = static_cast<CausalLM&>(m);
    ft::kernels::LinearCrossEntropyOptions ce;
    ce.reduction = ft::train::Reduction::sum;
    ce.weight_grad = !k.lora;  // LoRA leaves the (tied) head frozen, as ft train does
    mx::array l =
        ft::kernels::linear_cross_entropy(lm.hidden_states(b[0]), lm.output_weight(), b[1], ce);
    return ft::LossOutput{l, ft::train::num_valid_tokens(b[1])};
  };
  ft::OptimizerConfig oc;
  oc.name = "adamw";
  oc.learning_rate = 1e-4f;
  auto opt = ft::make_optimizer(oc);
  ft::StepConfig config;
  config.row_shards = kShards;
  ft::TrainStep step(model, loss, *opt, config);
  mx::array ids = mx::random::randint(0, model.config().vocab_size, {k.batch, k.length + 1},
                                      mx::int32, mx::random::key(3));
  ft::Batch batch{mx::slice(ids, {0, 0}, {k.batch, k.length}),
                  mx::slice(ids, {0, 1}, {k.batch, k.length + 1})};
  mx::eval(batch);
  ft::kernels::cpu::release_head_cross_entropy_packing();  // as in a fresh process
  mx::clear_cache();
  mx::reset_peak_memory();
  double before = mx::get_active_memory();
  for (int i = 0; i < 2; ++i) step.run({batch}, {mx::random::key(i)});
  return mx::get_peak_memory() - before;
}

TEST(MemoryEstimate, TracksTheMeasuredPeakOfTrainingSteps) {
  ft::testing::OnCpu cpu;
  for (Case k : {Case{true, 2, 128, false}, Case{true, 4, 256, true}, Case{false, 2, 256, false},
                 Case{true, 1, 512, false}}) {
    ft::Rng rng(0);
    auto built = ft::models::build_model(small_config(), rng);
    CausalLM& model = *built;
    if (k.lora) {
      ft::nn::LoraConfig l;
      l.rank = 16;
      l.target_modules = {"q_proj",    "k_proj",  "v_proj",   "o_proj",
                          "gate_proj", "up_proj", "down_proj"};
      ft::nn::apply_lora(model, l);
    }
    mx::eval(model.parameters().arrays());
    ft::models::TrainingPlan plan;
    plan.batch_size = k.batch;
    plan.seq_length = k.length;
    plan.grad_checkpoint = k.checkpoint;
    plan.row_shards = ft::row_shards(k.batch, kShards);  // as the step below splits its batch
    model.set_gradient_checkpointing(k.checkpoint);
    auto e = ft::models::estimate_training_memory(model, plan);
    double weights_live = e.weights;  // live before the step: only the weights
    double measured = measured_peak(model, k) + weights_live;
    double estimated = e.total();
    std::printf(
        "lora %d batch %d length %d ckpt %d: measured %.1f MiB, estimated %.1f MiB "
        "(weights %.1f grads %.1f opt %.1f act %.1f head %.1f)\n",
        k.lora, k.batch, k.length, k.checkpoint, measured / 1048576, estimated / 1048576,
        e.weights / 1048576.0, e.gradients / 1048576.0, e.optimizer_state / 1048576.0,
        e.activations / 1048576.0, e.head / 1048576.0);
    EXPECT_LT(std::abs(estimated - measured) / measured, 0.2);
  }
}

}  // namespace
