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
#include "ft/models/quantize.h"
#include "ft/models/registry.h"
#include "ft/nn/lora.h"
#include "ft/train/losses.h"
#include "ft/train/optimizer.h"
#include "ft/train/step.h"
#include "tests/test_util.h"

namespace {

namespace mx = mlx::core;
using ft::models::CausalLM;
using ft::models::Config;

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

namespace {

Config llama1b_config() {
  Config c;
  c.model_type = "llama";
  c.hidden_size = 2048;
  c.intermediate_size = 8192;
  c.num_hidden_layers = 16;
  c.num_attention_heads = 32;
  c.num_key_value_heads = 8;
  c.vocab_size = 128256;
  c.tie_word_embeddings = true;
  return c;
}

// Llama-3.1-8B, as ft bench's llama8b shape.
Config llama8b_config() {
  Config c = llama1b_config();
  c.hidden_size = 4096;
  c.intermediate_size = 14336;
  c.num_hidden_layers = 32;
  c.tie_word_embeddings = false;
  return c;
}

Config qwen05b_config() {
  Config c;
  c.model_type = "qwen2";
  c.hidden_size = 896;
  c.intermediate_size = 4864;
  c.num_hidden_layers = 24;
  c.num_attention_heads = 14;
  c.num_key_value_heads = 2;
  c.vocab_size = 151936;
  c.tie_word_embeddings = true;
  c.qkv_bias = true;
  return c;
}

}  // namespace

// Note [Memory on MLX's CUDA backend]: the estimate for CUDA against the peaks `ft bench`
// measured on an H100 (bfloat16, LoRA r16 on every linear layer or full fine-tuning). The
// models are built lazily: nothing is allocated.
TEST(MemoryEstimate, CudaPlansTrackPeaksMeasuredOnAnH100) {
  struct Run {
    Config config;
    bool lora;
    int batch, length;
    bool checkpoint;
    double measured_gib;
    double limit_gib = 0;  // --memory-limit
    bool bf16_state = false, masters = true;
    int bits = 0;  // a quantized base: 4 bits, groups of 64
  };
  const Config l1b = llama1b_config();
  const Config l8b = llama8b_config();
  for (const Run& r :
       {Run{l1b, true, 4, 2048, false, 25.5}, Run{l1b, false, 4, 2048, false, 42.44},
        Run{l1b, true, 4, 2048, true, 22.71}, Run{qwen05b_config(), true, 8, 1024, false, 25.2},
        Run{l1b, true, 1, 16384, true, 34.36}, Run{l1b, true, 1, 32768, true, 58.0},
        Run{l1b, true, 4, 2048, false, 14.81, 14}, Run{l1b, true, 4, 2048, false, 13.81, 10},
        Run{l1b, true, 4, 2048, true, 14.88, 8}, Run{l1b, false, 4, 2048, false, 38.95, 0, true},
        Run{l1b, false, 4, 2048, false, 33.23, 0, true, false},
        Run{l1b, false, 4, 2048, false, 20.73, 20, true, false},
        Run{l8b, true, 1, 2048, false, 28.78, 0, false, true, 4},
        Run{l8b, true, 1, 2048, false, 16.66, 16, false, true, 4},
        Run{l8b, true, 1, 2048, false, 16.23, 12, false, true, 4},
        Run{l8b, true, 1, 2048, true, 28.91, 0, false, true, 4},
        Run{l8b, true, 1, 2048, true, 17.64, 9, false, true, 4}}) {
    ft::Rng rng(0);
    auto model = ft::models::build_model(r.config, rng, mx::bfloat16);
    if (r.bits) ft::models::quantize_model(*model, ft::io::QuantSpec{64, r.bits}, false);
    if (r.lora) {
      ft::nn::LoraConfig l;
      l.rank = 16;
      l.target_modules = {"q_proj",    "k_proj",  "v_proj",   "o_proj",
                          "gate_proj", "up_proj", "down_proj"};
      ft::nn::apply_lora(*model, l);
    }
    ft::models::TrainingPlan plan;
    plan.batch_size = r.batch;
    plan.seq_length = r.length;
    plan.grad_checkpoint = r.checkpoint;
    plan.backend = "cuda";
    plan.memory_limit = uint64_t(r.limit_gib * double(1ull << 30));
    plan.optimizer_state_bytes = r.bf16_state ? 2 : 4;
    plan.master_weights = r.masters;
    const double estimated = double(ft::models::estimate_training_memory(*model, plan).total());
    const double measured = r.measured_gib * double(1ull << 30);
    EXPECT_LT(std::abs(estimated - measured) / measured, 0.1)
        << r.config.model_type << " lora " << r.lora << " " << r.batch << " x " << r.length
        << " checkpoint " << r.checkpoint << " bits " << r.bits << " limit " << r.limit_gib
        << " bf16 state " << r.bf16_state << " masters " << r.masters << ": estimated "
        << estimated / double(1ull << 30) << " GiB, measured " << r.measured_gib;
    // The CPU's plan of the same run differs: attention keeps its bf16 scores there.
    plan.backend = "cpu";
    EXPECT_NE(ft::models::estimate_training_memory(*model, plan).total(), uint64_t(estimated));
  }
}
