// ft bench: training throughput of a model shape with random weights and random token
// ids: tokens/s, model FLOPs utilisation and peak memory, optionally as one JSON line
// whose keys are those of ../shared/bench/hf_baseline.py (the transformers + PEFT
// reference), so a script can put both side by side.
//
// The step is the one `ft train` runs: the library's TrainStep (compiled value_and_grad,
// optimizer update, one evaluation) over causal_lm_loss (chunked output projection +
// cross-entropy), on the same LoRA wrappers and optimizer.
#include <sys/resource.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <mlx/memory.h>
#include <mlx/ops.h>
#include <mlx/random.h>
#include <mlx/transforms.h>
#include <nlohmann/json.hpp>

#include "apps/ft/commands.h"
#include "ft/core/device.h"
#include "ft/core/dtype.h"
#include "ft/core/error.h"
#include "ft/core/evaluate.h"  // defines: rethrow_named
#include "ft/core/random.h"
#include "ft/data/batching.h"
#include "ft/data/tokenize_sample.h"
#include "ft/data/tokenized.h"
#include "ft/hub/cache.h"
#include "ft/kernels/cpu/parallel.h"
#include "ft/models/memory.h"
#include "ft/models/quantize.h"
#include "ft/models/registry.h"
#include "ft/nn/lora.h"
#include "ft/train/causal_lm_task.h"
#include "ft/train/data_parallel.h"
#include "ft/train/memory_fit.h"
#include "ft/train/optimizer.h"
#include "ft/train/precision.h"
#include "ft/train/step.h"
#include "ft/train/trainer.h"

namespace ft::cli {
namespace {

namespace fs = std::filesystem;

struct BenchOptions {
  std::string shape = "tiny";
  std::string model;
  std::string method = "lora";
  int lora_rank = 16;
  float lora_alpha = 32.0f;
  // Empty: every linear layer of the decoder layers (Llama's q/k/v/o/gate/up/down, as
  // hf_baseline.py adapts; each family's own names otherwise).
  std::vector<std::string> target_modules;
  std::string dtype = "float32";
  int batch_size = 4;
  int seq_length = 256;
  int steps = 10;
  int warmup = 3;
  bool grad_checkpoint = false;
  std::string optimizer = "adamw";
  float learning_rate = 1e-4f;
  float max_grad_norm = 0.0f;
  int head_chunk = 0;
  double peak_tflops = 0.0;  // 0: 989 on CUDA, none elsewhere
  int threads = 0;
  uint64_t seed = 0;
  bool json = false;
  // "MIN:MAX": samples of random lengths in [MIN, MAX] batched as ft train batches them
  // (padded to each batch's longest, or packed with --pack); empty: every row seq_length.
  std::string lengths;
  bool pack = false;
  int quantize_bits = 0;  // QLoRA: the base quantized to this many bits; 0: off
  int quantize_group_size = 64;
  std::string optimizer_state = "float32";
  bool no_master_weights = false;
  double memory_limit_gib = 0;  // 0: MLX's own limit
};

// The step batches of a varied-length run: random samples of lengths uniform in
// [min_len, max_len] (every token trained), batched by data::Batcher as ft train batches
// them, enough for count steps. Adds each batch's trained tokens to real_tokens.
std::vector<Batch> varied_batches(const BenchOptions& o, int vocab, int count,
                                  std::vector<int64_t>& real_tokens) {
  int min_len = 0, max_len = 0;
  char colon = 0;
  std::istringstream in(o.lengths);
  FT_CHECK((in >> min_len >> colon >> max_len) && colon == ':' && in.peek() == EOF, "bench",
           "--lengths must be MIN:MAX, got '", o.lengths, "'");
  FT_CHECK(min_len >= 2 && min_len <= max_len && max_len <= o.seq_length, "bench",
           "--lengths needs 2 <= MIN <= MAX <= --seq-length (", o.seq_length, "), got ", min_len,
           ":", max_len);
  std::mt19937_64 gen(o.seed + 2);
  std::uniform_int_distribution<int> length(min_len, max_len), id(0, vocab - 1);
  // Rows of count batches hold at most count * batch * seq tokens, and the shortest
  // samples fill them: this many samples are never too few.
  const int64_t samples = int64_t(count) * o.batch_size * ((o.seq_length + min_len - 1) / min_len);
  data::TokenizedData data;
  for (int64_t i = 0; i < samples; ++i) {
    data::Sample sample;
    sample.ids.resize(length(gen));
    for (auto& t : sample.ids) t = id(gen);
    sample.mask.assign(sample.ids.size(), 1);
    data.add(sample, i + 1);
  }
  data::BatchOptions options;
  options.batch_size = o.batch_size;
  options.max_seq_length = o.seq_length;
  options.pack = o.pack;
  options.seed = o.seed;
  data::Batcher batcher(data, options);
  std::vector<Batch> out;
  data::Position at;
  for (int i = 0; i < count; ++i, at = batcher.next(at)) {
    data::Batch b = batcher.batch(at);
    real_tokens.push_back(b.trained_tokens);
    out.push_back(train::to_step_batch(b));
    mx::eval(out.back());
  }
  return out;
}

// The shapes of hf_baseline.py's SHAPES, field for field, so both sides build the same
// model. Qwen2 puts a bias on q, k and v (transformers' Qwen2Attention).
models::Config shape_config(const std::string& name) {
  std::map<std::string, models::Config> shapes;
  auto& tiny = shapes["tiny"];
  tiny.model_type = "llama";
  tiny.hidden_size = 256;
  tiny.intermediate_size = 688;
  tiny.num_hidden_layers = 4;
  tiny.num_attention_heads = 8;
  tiny.num_key_value_heads = 4;
  tiny.vocab_size = 32000;
  tiny.rope_theta = 10000.0f;
  tiny.tie_word_embeddings = true;
  tiny.max_position_embeddings = 2048;
  tiny.norm_eps = 1e-5f;

  auto& llama1b = shapes["llama1b"];  // Llama-3.2-1B
  llama1b.model_type = "llama";
  llama1b.hidden_size = 2048;
  llama1b.intermediate_size = 8192;
  llama1b.num_hidden_layers = 16;
  llama1b.num_attention_heads = 32;
  llama1b.num_key_value_heads = 8;
  llama1b.vocab_size = 128256;
  llama1b.rope_theta = 500000.0f;
  llama1b.tie_word_embeddings = true;
  llama1b.max_position_embeddings = 8192;
  llama1b.norm_eps = 1e-5f;

  auto& qwen05b = shapes["qwen05b"];  // Qwen2.5-0.5B
  qwen05b.model_type = "qwen2";
  qwen05b.hidden_size = 896;
  qwen05b.intermediate_size = 4864;
  qwen05b.num_hidden_layers = 24;
  qwen05b.num_attention_heads = 14;
  qwen05b.num_key_value_heads = 2;
  qwen05b.vocab_size = 151936;
  qwen05b.rope_theta = 1000000.0f;
  qwen05b.tie_word_embeddings = true;
  qwen05b.max_position_embeddings = 8192;
  qwen05b.norm_eps = 1e-6f;
  qwen05b.qkv_bias = true;

  auto& llama8b = shapes["llama8b"];  // Llama-3.1-8B
  llama8b.model_type = "llama";
  llama8b.hidden_size = 4096;
  llama8b.intermediate_size = 14336;
  llama8b.num_hidden_layers = 32;
  llama8b.num_attention_heads = 32;
  llama8b.num_key_value_heads = 8;
  llama8b.vocab_size = 128256;
  llama8b.rope_theta = 500000.0f;
  llama8b.tie_word_embeddings = false;
  llama8b.max_position_embeddings = 8192;
  llama8b.norm_eps = 1e-5f;

  auto it = shapes.find(name);
  if (it == shapes.end()) {
    std::string known;
    for (const auto& [key, _] : shapes) known += (known.empty() ? "" : ", ") + key;
    throw Error("bench", "unknown shape '" + name + "'; known shapes: " + known);
  }
  return it->second;
}

// Model FLOPs per step and token: models::flops_per_token's forward (the formula of
// hf_baseline.py, Note [Model FLOPs per token] in ft/models/causal_lm.cpp). A matmul's
// backward costs twice its forward when the weight's gradient is taken and once when only
// the input's is: LoRA (and DoRA) train no base weight, so a step is fwd (forward) + fwd
// (input gradients) + attn (attention's backward is twice its forward), and full
// fine-tuning is 3 fwd. The adapters' own small matmuls and recomputation under gradient
// checkpointing are not counted (model FLOPs, not hardware FLOPs).
double step_flops_per_token(const models::TokenFlops& f, bool adapters) {
  return adapters ? 2 * f.forward() + f.attention : 3 * f.forward();
}

// Note [CPU threads]
// MLX's C++ API has no thread-count setting: its CPU backend runs the element-wise and
// reduction kernels on the stream's own thread and hands matrix products to BLAS. With
// setup.sh's OpenBLAS under mlx[cpu] (Note [OpenBLAS under mlx[cpu]]), those follow
// OPENBLAS_NUM_THREADS or openblas_set_num_threads. --threads sets that, ft's own CPU
// kernels' threads, and so the training step's row shards (Note [Row shards on the CPU]).
int use_threads(int wanted) {
  if (wanted > 0) {
    FT_CHECK(kernels::cpu::set_blas_threads(wanted), "bench",
             "--threads sets OpenBLAS's threads, and MLX is not using OpenBLAS here");
    kernels::cpu::set_num_threads(wanted);
  }
  return kernels::cpu::num_threads();
}

// CPU seconds of the whole process (every thread, user and system) so far: on a shared
// machine the wall time of a step grows with the load, its CPU time much less.
double process_cpu_seconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  auto seconds = [](const timeval& t) { return double(t.tv_sec) + 1e-6 * double(t.tv_usec); };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

double round_to(double x, int digits) {
  double scale = std::pow(10.0, digits);
  return std::round(x * scale) / scale;
}

void run_bench(const BenchOptions& o) {
  FT_CHECK(o.steps > 0, "bench", "--steps must be positive");
  mx::Dtype dtype = parse_float_dtype(o.dtype);
  std::string device = use_preferred_device();
  bool on_gpu = mx::default_device() == mx::Device::gpu;
  int threads = use_threads(o.threads);

  std::unique_ptr<models::CausalLM> model;
  std::string shape = o.shape;
  if (!o.model.empty()) {
    const fs::path folder = hub::resolve_model(o.model);
    FT_CHECK(fs::is_directory(folder), "bench", o.model, ": no such model folder");
    model = models::load_model(folder, dtype);
    shape = folder.filename().string();
    if (shape.empty()) shape = folder.parent_path().filename().string();
  } else {
    Rng rng(o.seed);
    model = models::build_model(shape_config(o.shape), rng, dtype);
  }
  const models::Config& config = model->config();
  const models::TokenFlops flops = models::flops_per_token(*model, o.seq_length);

  model->set_gradient_checkpointing(o.grad_checkpoint);
  bool adapters = o.method != "full";
  if (o.quantize_bits > 0) {
    FT_CHECK(adapters, "bench", "--quantize-bits needs LoRA or DoRA, not full fine-tuning");
    // Lazily: the packed weights are made with the others below, after the memory check.
    models::quantize_model(*model, {o.quantize_group_size, o.quantize_bits}, /*evaluate=*/false);
  }
  if (adapters) {
    nn::LoraConfig lora;
    lora.rank = o.lora_rank;
    lora.alpha = o.lora_alpha;
    lora.dora = o.method == "dora";
    lora.target_modules = o.target_modules;
    if (lora.target_modules.empty()) lora.target_regex = R"(\.(layers|h)\.[0-9]+\.)";
    lora.seed = o.seed;
    nn::apply_lora(*model, lora);  // adapters in f32, the trained masters
  }
  // Before the weights exist: the estimate reads shapes only, and MLX's memory limit.
  if (o.memory_limit_gib > 0)
    mx::set_memory_limit(static_cast<size_t>(o.memory_limit_gib * double(1ull << 30)));
  models::TrainingPlan plan =
      train::training_plan(o.batch_size, o.seq_length, o.grad_checkpoint, o.optimizer);
  plan.master_weights = !o.no_master_weights;
  plan.optimizer_state_bytes = o.optimizer_state == "bfloat16" ? 2 : 4;
  train::check_memory_fits(*model, plan, memory_budget(),
                           on_gpu ? "free on the GPU" : "available on this machine", "bench");
  const double estimated_gib =
      double(models::estimate_training_memory(*model, plan).total()) / double(1ull << 30);
  mx::eval(model->parameters().arrays());

  OptimizerConfig opt;
  opt.name = o.optimizer;
  opt.learning_rate = o.learning_rate;
  opt.state_dtype = parse_float_dtype(o.optimizer_state);
  auto optimizer = make_optimizer(opt);
  StepConfig step_config;
  step_config.master_weights = !o.no_master_weights;
  // Under ft launch, each rank times its share of every batch (data_parallel.h).
  const train::DataParallel parallel = train::DataParallel::from_environment();
  step_config.parallel = &parallel;
  if (o.max_grad_norm > 0) step_config.max_grad_norm = o.max_grad_norm;
  TrainStep step(*model, train::causal_lm_loss(o.pack, o.head_chunk), *optimizer, step_config);

  // One batch for every step: seq + 1 random ids, the model reads the first seq, the
  // targets are the last seq. Or, with --lengths, a batch per step of varied samples.
  Rng rng(o.seed + 1);
  std::vector<Batch> batches;
  std::vector<int64_t> real_tokens;  // trained tokens of each batch
  if (o.lengths.empty()) {
    FT_CHECK(!o.pack, "bench", "--pack needs --lengths MIN:MAX (samples to pack)");
    mx::array ids =
        mx::random::randint(0, config.vocab_size, {o.batch_size, o.seq_length + 1}, mx::int32,
                            rng.next());  // (batch, seq + 1)
    batches.push_back({mx::slice(ids, {0, 0}, {o.batch_size, o.seq_length}),
                       mx::slice(ids, {0, 1}, {o.batch_size, o.seq_length + 1})});
    mx::eval(batches.back());
  } else {
    batches = varied_batches(o, config.vocab_size, o.warmup + o.steps, real_tokens);
  }
  auto batch_of = [&](int i) -> const Batch& { return batches[batches.size() == 1 ? 0 : i]; };
  auto rows_of = [&](int i) { return parallel.rows(batch_of(i)); };

  // The first step traces and compiles; warmup steps keep that out of the timing. Padded
  // batches of new lengths trace again in the timed steps, as they would in ft train.
  auto run_step = [&](int i) {
    try {
      return step.run({rows_of(i)}, {rng.next()});
    } catch (const std::runtime_error&) {
      rethrow_named("bench", "step " + std::to_string(i + 1));
    }
  };
  StepResult result;
  for (int i = 0; i < o.warmup; ++i) result = run_step(i);
  mx::reset_peak_memory();
  double cpu_start = process_cpu_seconds();
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < o.steps; ++i) result = run_step(o.warmup + i);
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  double cpu_step_s = (process_cpu_seconds() - cpu_start) / o.steps;
  // The all-reduce of a step on its own: the gradients' sum across ranks, timed apart.
  double allreduce_s = 0;
  if (!parallel.alone()) {
    std::vector<mx::array> grads;
    for (const auto& [name, p] : model->trainable_parameters()) grads.push_back(mx::zeros_like(p));
    mx::eval(grads);
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < o.steps; ++i) mx::eval(parallel.sum(grads));
    allreduce_s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / o.steps;
  }

  double step_s = seconds / o.steps;
  // Tokens trained per second: every row's with random rows; with --lengths the real
  // (non-padding) tokens, beside the rows' own count.
  double row_tokens = 0, trained = 0;
  for (int i = 0; i < o.steps; ++i) {
    const Batch& b = batch_of(o.warmup + i);
    row_tokens += double(b[0].shape(0)) * b[0].shape(1);
    trained += real_tokens.empty() ? double(b[0].shape(0)) * b[0].shape(1)
                                   : double(real_tokens[o.warmup + i]);
  }
  double tokens_per_s = trained / seconds;
  double peak_gib = double(mx::get_peak_memory()) / double(1ull << 30);
  // What stays allocated between steps (weights, masters, optimizer state); the rest of the
  // peak lives only inside a step.
  double resident_gib = double(mx::get_active_memory()) / double(1ull << 30);
  double peak_tflops = o.peak_tflops > 0                      ? o.peak_tflops
                       : (on_gpu && backend_name() == "cuda") ? 989.0
                                                              : 0.0;
  double fpt = step_flops_per_token(flops, adapters);
  std::optional<double> mfu;
  if (peak_tflops > 0) mfu = tokens_per_s * fpt / (peak_tflops * 1e12);

  if (o.json) {
    nlohmann::ordered_json out;
    out["system"] = "ft";
    out["shape"] = shape;
    out["mode"] = o.method;
    out["batch"] = o.batch_size;
    out["seq"] = o.seq_length;
    out["grad_ckpt"] = o.grad_checkpoint;
    out["compile"] = true;
    out["dtype"] = o.dtype;
    out["tokens_per_s"] = std::llround(tokens_per_s);
    out["step_s"] = round_to(step_s, 4);
    out["device"] = on_gpu ? backend_name() : "cpu";
    out["threads"] = threads;
    out["ranks"] = parallel.size();
    if (!parallel.alone()) out["allreduce_s"] = round_to(allreduce_s, 5);
    out["peak_mem_gib"] = round_to(peak_gib, 2);
    out["estimated_mem_gib"] = round_to(estimated_gib, 2);
    out["resident_mem_gib"] = round_to(resident_gib, 2);
    out["mfu"] = mfu ? nlohmann::ordered_json(round_to(*mfu, 4)) : nlohmann::ordered_json();
    out["loss"] = result.loss;
    out["flops_per_token"] = fpt;
    out["cpu_s_per_step"] = round_to(cpu_step_s, 4);
    out["trainable_params"] = model->num_trainable_parameters();
    if (o.quantize_bits > 0) {
      out["quantize_bits"] = o.quantize_bits;
      out["quantize_group_size"] = o.quantize_group_size;
    }
    if (o.optimizer_state != "float32") out["optimizer_state"] = o.optimizer_state;
    if (o.no_master_weights) out["master_weights"] = false;
    if (o.memory_limit_gib > 0) out["memory_limit_gib"] = o.memory_limit_gib;
    if (!o.lengths.empty()) {
      out["lengths"] = o.lengths;
      out["pack"] = o.pack;
      out["real_token_share"] = round_to(trained / row_tokens, 4);
    }
    std::cout << out.dump() << std::endl;
    return;
  }
  std::printf(
      "model: %s (%s, %s), %zu parameters, %zu trained (%s%s)\n", shape.c_str(),
      config.model_type.c_str(), o.dtype.c_str(), model->num_parameters(),
      model->num_trainable_parameters(), o.method.c_str(),
      o.quantize_bits > 0 ? (", " + std::to_string(o.quantize_bits) + "-bit base").c_str() : "");
  std::printf("device: %s", device.c_str());
  if (!on_gpu) std::printf(", %d threads", threads);
  std::printf("\nbatch %d x %d tokens, %d steps after %d warmup%s\n", o.batch_size, o.seq_length,
              o.steps, o.warmup, o.grad_checkpoint ? ", gradient checkpointing" : "");
  if (!o.lengths.empty())
    std::printf("samples of %s tokens, %s; %.1f%% of the rows' tokens are real\n",
                o.lengths.c_str(), o.pack ? "packed" : "padded to each batch's longest",
                100 * trained / row_tokens);
  std::printf("%.0f %stokens/s, %.4f s/step (%.4f CPU s), loss %.4f\n", tokens_per_s,
              o.lengths.empty() ? "" : "real ", step_s, cpu_step_s, result.loss);
  if (!parallel.alone())
    std::printf("%d ranks (%s): the gradients' all-reduce alone takes %.4f s a step\n",
                parallel.size(), parallel.backend().c_str(), allreduce_s);
  std::printf("peak memory %.2f GiB", peak_gib);
  if (!on_gpu) std::printf(" (MLX's allocator)");
  std::printf(", estimated %.2f GiB, %.2f GiB kept between steps\n", estimated_gib, resident_gib);
  if (mfu)
    std::printf("MFU %.2f%% of %.0f TFLOP/s (%.3g FLOPs/token)\n", 100 * *mfu, peak_tflops, fpt);
  else
    std::printf("MFU: give --peak-tflops (%.3g FLOPs/token)\n", fpt);
}

}  // namespace

void add_bench_command(CLI::App& app) {
  auto o = std::make_shared<BenchOptions>();
  auto* cmd = app.add_subcommand(
      "bench",
      "Time training steps of a model shape with random weights and token ids: tokens/s, "
      "MFU, peak memory");
  cmd->add_option("--shape", o->shape, "tiny, llama1b, qwen05b or llama8b (hf_baseline.py's)")
      ->capture_default_str();
  cmd->add_option("--model", o->model,
                  "A model folder or Hugging Face id in place of --shape (its weights)");
  add_method_option(cmd, o->method);
  add_lora_rank_option(cmd, o->lora_rank);
  cmd->add_option("--lora-alpha", o->lora_alpha, "LoRA alpha (scale alpha / rank)")
      ->check(kPositive)
      ->capture_default_str();
  add_target_modules_option(cmd, o->target_modules, "every linear layer of the decoder layers");
  add_dtype_option(cmd, o->dtype, "base weights and compute")->capture_default_str();
  cmd->add_option("--batch-size", o->batch_size, "Rows per step")
      ->check(kPositive)
      ->capture_default_str();
  cmd->add_option("--seq-length", o->seq_length, "Tokens per row")
      ->check(kPositive)
      ->capture_default_str();
  cmd->add_option("--steps", o->steps, "Timed steps")->check(kPositive)->capture_default_str();
  cmd->add_option("--warmup", o->warmup, "Untimed steps first (tracing and compiling)")
      ->check(kNonNegative)
      ->capture_default_str();
  add_grad_checkpoint_option(cmd, o->grad_checkpoint);
  add_optimizer_option(cmd, o->optimizer);
  cmd->add_option("--learning-rate,--lr", o->learning_rate, "Learning rate")
      ->check(kPositive)
      ->capture_default_str();
  cmd->add_option("--max-grad-norm", o->max_grad_norm,
                  "Clip the global gradient norm (0: off, as in hf_baseline.py)")
      ->check(kNonNegative)
      ->capture_default_str();
  cmd->add_option("--head-chunk", o->head_chunk,
                  "Tokens per chunk of the fused output head and loss (0: automatic)")
      ->check(kNonNegative)
      ->capture_default_str();
  cmd->add_option("--peak-tflops", o->peak_tflops,
                  "Peak TFLOP/s for MFU (0: 989, an H100's dense bf16, on CUDA; no MFU "
                  "elsewhere)")
      ->check(kNonNegative)
      ->capture_default_str();
  cmd->add_option("--threads", o->threads,
                  "CPU threads (0: FT_NUM_THREADS, OPENBLAS_NUM_THREADS or all cores): the step "
                  "runs a row shard of the batch on each, with one OpenBLAS thread")
      ->check(kNonNegative)
      ->capture_default_str();
  add_seed_option(cmd, o->seed, "the weights, adapters and token ids");
  cmd->add_option("--lengths", o->lengths,
                  "MIN:MAX: samples of random lengths in [MIN, MAX] batched as ft train does, "
                  "padded or with --pack; tokens/s counts real (non-padding) tokens")
      ->capture_default_str();
  cmd->add_flag("--pack", o->pack, "With --lengths: pack samples into rows of --seq-length");
  add_quantize_options(cmd, o->quantize_bits, o->quantize_group_size,
                       "before adding the adapters, as ft train does");
  cmd->add_option("--optimizer-state", o->optimizer_state,
                  "dtype of the optimizer's moments: float32 or bfloat16")
      ->check(CLI::IsMember({"float32", "bfloat16"}))
      ->capture_default_str();
  cmd->add_flag("--no-master-weights", o->no_master_weights,
                "Update 16-bit weights themselves, with no float32 copies");
  cmd->add_option("--memory-limit", o->memory_limit_gib,
                  "GiB of device memory MLX may hold before the host waits for the GPU to "
                  "finish queued work (0: MLX's default)")
      ->check(kNonNegative)
      ->capture_default_str();
  cmd->add_flag("--json", o->json,
                "One JSON line with hf_baseline.py's keys (peak_mem_gib: MLX's allocator's "
                "peak, on the CPU too)");
  cmd->callback([o] { run_bench(*o); });
}

}  // namespace ft::cli
