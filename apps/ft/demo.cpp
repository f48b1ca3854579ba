// ft demo: trains a small Llama-style model on bundled text (two-digit additions,
// one per line, read as bytes) and prints the falling loss.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include <mlx/memory.h>
#include <mlx/ops.h>
#include <mlx/random.h>
#include <mlx/transforms.h>

#include "apps/ft/commands.h"
#include "ft/core/device.h"
#include "ft/core/random.h"
#include "ft/models/registry.h"
#include "ft/train/causal_lm_task.h"
#include "ft/train/losses.h"
#include "ft/train/optimizer.h"
#include "ft/train/step.h"

namespace ft::cli {
namespace {

namespace mx = mlx::core;

struct DemoOptions {
  std::string data = FT_SOURCE_DIR "/examples/data/arithmetic.txt";
  int steps = 300;
  int batch = 16;
  int length = 64;
  int accumulate = 2;
  float learning_rate = 3e-3f;
  int warmup = 20;
  float max_grad_norm = 1.0f;
  int layers = 2;
  int hidden = 128;
  bool checkpointing = false;
  bool no_compile = false;
  uint64_t seed = 0;
  int log_every = 20;
};

mx::array read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  FT_CHECK(in, "demo", path, ": cannot open");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  FT_CHECK(text.size() > 1024, "demo", path, ": too short for a demo (", text.size(), " bytes)");
  std::vector<int32_t> ids(text.begin(), text.end());
  for (auto& id : ids) id &= 0xff;
  return mx::array(ids.data(), {static_cast<int>(ids.size())}, mx::int32);
}

// (batch, length + 1) windows of the corpus starting at random offsets.
mx::array sample_windows(const mx::array& corpus, int batch, int length, const mx::array& key) {
  int limit = corpus.shape(0) - length - 1;
  mx::array starts = mx::random::randint(0, limit, {batch, 1}, mx::int32, key);
  mx::array offsets = mx::reshape(mx::arange(length + 1, mx::int32), {1, length + 1});
  return mx::take(corpus, starts + offsets);
}

void run_demo(const DemoOptions& o) {
  std::string device = use_preferred_device();
  mx::array corpus = read_bytes(o.data);
  std::cout << "ft demo on " << device << "\n";
  Rng rng(o.seed);

  models::Config config;
  config.vocab_size = 256;
  config.hidden_size = o.hidden;
  config.intermediate_size = o.hidden * 8 / 3 / 8 * 8;
  config.num_hidden_layers = o.layers;
  config.num_attention_heads = 4;
  config.num_key_value_heads = 2;
  config.tie_word_embeddings = true;
  std::unique_ptr<models::CausalLM> built = models::build_model(config, rng);
  models::CausalLM& model = *built;
  model.set_gradient_checkpointing(o.checkpointing);
  mx::eval(model.parameters().arrays());
  std::cout << "model: Llama-style, " << o.layers << " layers, hidden " << o.hidden << ", "
            << model.num_parameters() << " parameters; data: " << o.data << " (" << corpus.shape(0)
            << " bytes)\n";

  OptimizerConfig opt;
  opt.name = "adamw";
  opt.weight_decay = 0.01f;
  opt.schedule = warmup_cosine(o.learning_rate, o.warmup, o.steps, o.learning_rate * 0.1f);
  auto optimizer = make_optimizer(opt);

  // Each row is a window of the corpus: the model reads all but its last byte and
  // predicts all but its first.
  LossFn lm_loss = train::causal_lm_loss();
  LossFn loss_fn = [lm_loss](nn::Module& m, const Batch& batch, const mx::array& key) {
    const mx::array& window = batch[0];  // (B, L + 1)
    int length = window.shape(1) - 1;
    mx::array inputs = mx::slice(window, {0, 0}, {window.shape(0), length});
    mx::array targets = mx::slice(window, {0, 1}, {window.shape(0), length + 1});
    return lm_loss(m, {inputs, targets}, key);
  };
  StepConfig step_config;
  step_config.compile = !o.no_compile;
  step_config.max_grad_norm = o.max_grad_norm;
  TrainStep step(model, loss_fn, *optimizer, step_config);

  std::printf("%6s %9s %10s %9s %10s\n", "step", "loss", "lr", "grad", "tokens/s");
  auto start = std::chrono::steady_clock::now();
  double tokens = 0;
  float first = 0, last = 0;
  for (int i = 1; i <= o.steps; ++i) {
    std::vector<Batch> micro;
    std::vector<mx::array> keys;
    for (int j = 0; j < o.accumulate; ++j) {
      micro.push_back({sample_windows(corpus, o.batch, o.length, rng.next())});
      keys.push_back(rng.next());
    }
    StepResult r = step.run(micro, keys);
    tokens += r.tokens;
    if (i == 1) first = r.loss;
    last = r.loss;
    if (i == 1 || i % o.log_every == 0 || i == o.steps) {
      double seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      std::printf("%6d %9.4f %10.2e %9.3f %10.0f\n", i, r.loss, r.learning_rate, r.grad_norm,
                  tokens / seconds);
      std::fflush(stdout);
    }
  }
  std::printf("loss %.4f -> %.4f; peak memory %s\n", first, last,
              format_bytes(mx::get_peak_memory()).c_str());
}

}  // namespace

void add_demo_command(CLI::App& app) {
  auto o = std::make_shared<DemoOptions>();
  auto* cmd = app.add_subcommand("demo", "Train a small model on bundled text and print the loss");
  cmd->add_option("--data", o->data, "Text file to learn (bytes are tokens)")
      ->capture_default_str();
  cmd->add_option("--steps", o->steps, "Optimizer steps")
      ->capture_default_str()
      ->check(kPositive);
  cmd->add_option("--batch", o->batch, "Sequences per micro-batch")
      ->capture_default_str()
      ->check(kPositive);
  cmd->add_option("--length", o->length, "Tokens per sequence")
      ->capture_default_str()
      ->check(kPositive);
  cmd->add_option("--accumulate", o->accumulate, "Micro-batches per step")
      ->capture_default_str()
      ->check(kPositive);
  cmd->add_option("--lr", o->learning_rate, "Peak learning rate (warmup, then cosine decay)")
      ->capture_default_str();
  cmd->add_option("--warmup", o->warmup, "Warmup steps")->capture_default_str();
  cmd->add_option("--max-grad-norm", o->max_grad_norm, "Clip gradients to this global norm")
      ->capture_default_str();
  cmd->add_option("--layers", o->layers, "Decoder layers")
      ->capture_default_str()
      ->check(kPositive);
  cmd->add_option("--hidden", o->hidden, "Hidden size (a multiple of 8)")
      ->capture_default_str()
      ->check(kPositive);
  cmd->add_flag("--checkpointing", o->checkpointing,
                "Recompute each layer's activations in the backward pass");
  cmd->add_flag("--no-compile", o->no_compile, "Run the step without mlx::core::compile");
  add_seed_option(cmd, o->seed, "the weights, data order and dropout");
  cmd->add_option("--log-every", o->log_every, "Print every N steps")
      ->capture_default_str()
      ->check(kPositive);
  cmd->callback([o] { run_demo(*o); });
}

}  // namespace ft::cli
