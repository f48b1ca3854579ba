// ft train, ft train quick, ft validate: fine-tune a model folder on a dataset with
// LoRA, DoRA or full fine-tuning. Every option is also a key of a YAML config
// (--config): the key is the option's long name with '-' or '_'; the command line wins.
#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <unistd.h>

#include <mlx/memory.h>
#include <mlx/transforms.h>

#include "apps/ft/commands.h"
#include "apps/ft/train_options.h"
#include "ft/core/device.h"
#include "ft/core/dtype.h"
#include "ft/core/error.h"
#include "ft/data/dataset.h"
#include "ft/io/adapters.h"
#include "ft/io/gguf.h"
#include "ft/io/gguf_tokenizer.h"
#include "ft/io/model_folder.h"
#include "ft/models/memory.h"
#include "ft/models/quantize.h"
#include "ft/models/registry.h"
#include "ft/train/causal_lm_task.h"
#include "ft/train/checkpoint.h"  // defines: train::latest_checkpoint
#include "ft/train/data_parallel.h"
#include "ft/train/event_sinks.h"  // defines: train::ConsoleSink, train::EventsFileSink
#include "ft/train/loss_plot.h"    // defines: train::write_loss_plot
#include "ft/train/memory_fit.h"
#include "ft/train/optimizer.h"
#include "ft/train/precision.h"
#include "ft/train/schedule.h"
#include "ft/train/tensorboard.h"  // defines: train::TensorBoardSink
#include "ft/train/trainer.h"

namespace ft::cli {
namespace {

namespace fs = std::filesystem;

struct Prepared {
  bool saves_template = false;  // the data is rendered with a template the output keeps
  std::unique_ptr<data::DataLoader> loader;
  std::vector<data::Split> splits;
  const data::Split* train = nullptr;
  const data::Split* valid = nullptr;
  data::BatchOptions batch;
  int64_t total_steps = 0;
};

int64_t count_steps(const TrainOptions& o, const Prepared& p) {
  if (o.iterations > 0) return o.iterations;
  data::Batcher batcher(p.train->data, p.batch);
  int64_t per_epoch = (batcher.batches_per_epoch() + o.grad_accumulation - 1) / o.grad_accumulation;
  return o.epochs * per_epoch;
}

// The output folder can be written: it is a writable folder, or the nearest folder above
// it that exists is writable. Nothing is created, so a run refused for bad input leaves
// no trace.
void check_output_folder(const fs::path& dir) {
  std::error_code ec;
  fs::path existing = fs::absolute(dir, ec);
  while (!existing.empty() && !fs::exists(existing, ec) && existing != existing.parent_path())
    existing = existing.parent_path();
  FT_CHECK(fs::is_directory(existing, ec) && access(existing.c_str(), W_OK) == 0, "train",
           dir.string(), ": cannot write the output folder");
}

// Before training: the memory estimate of a step against the budget. A batch size of 0
// (auto) becomes the largest that fits, with gradient checkpointing turned on when one
// row does not fit without it; a given batch that does not fit is refused, saying what
// would.
void fit_memory(TrainOptions& o, Prepared& p, models::CausalLM& model) {
  // Padded batches are as long as their longest row; packed rows are max_seq_length long.
  int64_t longest = 1;
  for (size_t i = 0; i < p.train->data.size(); ++i)
    longest = std::max(longest, p.train->data.length(i));
  const int seq =
      o.pack ? o.max_seq_length : static_cast<int>(std::min<int64_t>(o.max_seq_length, longest));
  models::TrainingPlan plan =
      train::training_plan(std::max(o.batch_size, 1), seq, o.grad_checkpoint, o.optimizer);
  plan.master_weights = !o.no_master_weights;
  plan.optimizer_state_bytes = o.optimizer_state == "bfloat16" ? 2 : 4;
  const bool given = o.memory_budget_gib > 0;
  const uint64_t budget =
      given ? static_cast<uint64_t>(o.memory_budget_gib * 1024.0 * 1024.0 * 1024.0)
            : memory_budget();
  const std::string where =
      given ? "given by --memory-budget"
            : (mx::default_device() == mx::Device::gpu ? "free on the GPU"
                                                       : "available on this machine");
  if (o.batch_size > 0) {
    train::check_memory_fits(model, plan, budget, where);
    return;
  }
  FT_CHECK(budget > 0, "train", "--batch-size auto needs the device's memory, which ",
           backend_name(), " does not report; give --memory-budget GIB");
  const int most = static_cast<int>(std::min<size_t>(1024, p.train->data.size()));
  int batch = train::largest_fitting_batch(model, plan, budget, most);
  if (batch == 0 && !plan.grad_checkpoint) {
    plan.grad_checkpoint = true;
    batch = train::largest_fitting_batch(model, plan, budget, most);
    if (batch > 0) {
      o.grad_checkpoint = true;
      model.set_gradient_checkpointing(true);
    }
  }
  // Nothing fits: the error of one row says by how much and what to change.
  if (batch == 0) train::check_memory_fits(model, train::with_batch_size(plan, 1), budget, where);
  const auto estimate =
      models::estimate_training_memory(model, train::with_batch_size(plan, batch));
  std::cout << "batch size auto: " << batch
            << (o.grad_checkpoint ? " with gradient checkpointing" : "") << " (estimate "
            << format_bytes(estimate.total()) << " of the " << format_bytes(budget) << " " << where
            << ")\n";
  o.batch_size = batch;
  p.batch.batch_size = batch;
  p.total_steps = count_steps(o, p);
}

Prepared prepare_data(const TrainOptions& o) {
  FT_CHECK(!o.model.empty(), "train", "no model folder (give MODEL or the 'model' key)");
  FT_CHECK(!o.data.empty(), "train", "no data (give DATA or the 'data' key)");
  FT_CHECK(io::is_model_path(o.model), "train", o.model, ": no such model folder or GGUF file");
  std::vector<data::DataSource> sources;
  std::string shown;
  for (const std::string& text : o.data) {
    sources.push_back(data::parse_data_source(text));
    FT_CHECK(fs::exists(sources.back().path), "train", sources.back().path.string(),
             ": no such file or folder");
    shown += (shown.empty() ? "" : " + ") + text;
  }
  Prepared p;
  // An adapter trained further keeps the template it was trained with.
  data::DataOptions d = sample_data_options(o.samples, o.max_seq_length, o.adapter);
  p.saves_template = !d.chat_template.empty();
  d.valid_fraction = o.valid_fraction;
  d.seed = o.seed;
  d.cache_dir = data::default_cache_dir();  // a second run starts at once
  p.loader = std::make_unique<data::DataLoader>(o.model, d);
  p.splits = p.loader->load_all(sources);
  if (!o.valid_data.empty()) {
    FT_CHECK(fs::is_regular_file(o.valid_data), "train", o.valid_data,
             ": no such record file (--valid-data)");
    FT_CHECK(o.valid_fraction == 0, "train",
             "--valid-data and --valid-fraction both give a validation split: keep one");
    std::erase_if(p.splits, [](const data::Split& s) { return s.name == "valid"; });
    p.splits.push_back(p.loader->load_file(o.valid_data, "valid"));
  }
  for (const auto& s : p.splits) {
    if (s.name == "train") p.train = &s;
    if (s.name == "valid") p.valid = &s;
  }
  FT_CHECK(p.train != nullptr, "train", shown, ": no training split");
  FT_CHECK(p.train->data.size() > 0, "train", shown, ": no training records");
  FT_CHECK(o.eval_every == 0 || p.valid, "train", "--eval-every ", o.eval_every,
           " needs a validation split, and ", shown,
           " has none: give --valid-data FILE, --valid-fraction F, or a data folder with a valid "
           "file");
  FT_CHECK(o.patience == 0 || o.eval_every > 0, "train", "--patience ", o.patience,
           " stops after evaluations without improvement: give --eval-every N too");
  p.batch.batch_size = o.batch_size;
  p.batch.max_seq_length = o.max_seq_length;
  p.batch.pack = o.pack;
  p.batch.seed = o.seed;
  const auto& tok = p.loader->tokenizer();
  p.batch.pad_id =
      tok.pad_token() ? tok.pad_token()->id : (tok.eos_token() ? tok.eos_token()->id : 0);
  // With --batch-size auto the steps are counted once the batch size is chosen.
  if (o.batch_size > 0) p.total_steps = count_steps(o, p);
  return p;
}

void print_split(const data::Split& s) {
  std::cout << s.name << ": " << s.source.string() << ": " << s.stats.records << " records, "
            << s.stats.tokens << " tokens (" << s.stats.trained_tokens << " trained), "
            << s.stats.truncated << " truncated";
  if (s.stats.skipped > 0) std::cout << ", " << s.stats.skipped << " bad records skipped";
  std::cout << "\n";
  for (const std::string& reason : s.stats.skip_reasons)
    std::cout << "  skipped " << reason << "\n";
}

OptimizerConfig optimizer_config(const TrainOptions& o, int64_t total_steps) {
  OptimizerConfig opt;
  opt.name = o.optimizer;
  opt.learning_rate = o.learning_rate;
  opt.weight_decay = o.weight_decay;
  opt.state_dtype = parse_float_dtype(o.optimizer_state);
  ScheduleConfig s;
  s.learning_rate = o.learning_rate;
  s.warmup_steps = o.warmup_steps;
  s.decay_steps = std::max<int64_t>(1, total_steps - o.warmup_steps);
  s.name = o.schedule == "cosine"   ? "cosine_decay"
           : o.schedule == "linear" ? "linear_decay"
                                    : "constant";
  opt.schedule = make_schedule(s);
  return opt;
}

nn::LoraConfig lora_config(const TrainOptions& o) {
  FT_CHECK(o.adapter.empty() || o.method != "full", "train",
           "--adapter continues a LoRA/DoRA adapter; it does not go with --method full");
  // mlx-lm names its adapted layers by keys within each of the last num_layers blocks.
  FT_CHECK(o.adapter_format != "mlx-lm" || o.target_regex.empty(), "train",
           "--adapter-format mlx-lm adapts layers by --target-modules, not --target-regex");
  nn::LoraConfig l;
  l.rank = o.lora_rank;
  l.alpha = o.lora_alpha;
  l.dropout = o.lora_dropout;
  l.rslora = o.rslora;
  l.dora = o.method == "dora";
  l.target_modules = o.target_modules;
  l.target_regex = o.target_regex;
  if (l.target_modules.empty() && l.target_regex.empty() && !o.model.empty() &&
      io::is_model_path(o.model))
    l.target_modules =
        models::family_of(models::from_hf_config(io::read_config(o.model)).model_type)
            .default_lora_targets;
  l.num_layers = o.num_layers;
  l.seed = o.seed;
  return l;
}

// --router-aux-loss needs a router: checked from config.json before anything is read or
// written.
void check_router_aux_loss(const TrainOptions& o) {
  if (o.router_aux_loss < 0 || o.model.empty()) return;
  models::Config c = models::from_hf_config(io::read_config(o.model));
  FT_CHECK(c.num_experts > 0, "train", "--router-aux-loss: a ", c.model_type,
           " model has no router (mixture-of-experts models only)");
}

// Distillation compares the two models' distributions token by token: the teacher must
// use the student's tokenizer. Checked from the configs, before any data or weights load.
void check_teacher(const TrainOptions& o) {
  if (o.teacher.empty() || o.model.empty()) return;
  int64_t student_vocab = models::from_hf_config(io::read_config(o.model)).vocab_size;
  int64_t teacher_vocab = models::from_hf_config(io::read_config(o.teacher)).vocab_size;
  FT_CHECK(teacher_vocab == student_vocab, "distill", "the teacher has ", teacher_vocab,
           " vocab entries but the student ", student_vocab,
           ": the teacher must share the student's tokenizer");
}

void on_sigint(int) {
  train::request_stop();
}

// The files beside a fully fine-tuned model's weights: the tokenizer's, copied from the
// model folder or made from a GGUF file's metadata (Note [GGUF tokenizers]).
io::SaveOptions model_files(const TrainOptions& o) {
  io::SaveOptions save;
  if (io::is_gguf_file(o.model)) {
    const io::TokenizerFiles files = io::gguf_tokenizer_files(io::read_gguf_file(o.model));
    save.json_files = {
        {"tokenizer.json", nlohmann::json::parse(files.tokenizer_json)},
        {"tokenizer_config.json", nlohmann::json::parse(files.tokenizer_config_json)}};
  } else {
    save.copy_tokenizer_from = o.model;
  }
  return save;
}

void save_adapter(const TrainOptions& o, const nn::Module& model, const nn::LoraConfig& lora,
                  const fs::path& dir) {
  if (o.adapter_format == "mlx-lm") {
    io::save_mlx_lm_adapter(model, lora, dir);
  } else {
    // Loadable by peft.PeftModel.from_pretrained, and by ft eval/generate/fuse as mlx-lm's.
    io::save_peft_adapter(model, lora, o.model, dir,
                          models::peft_module_prefix(io::read_config(o.model)));
  }
}

// The template the data was rendered with goes with the output (a model folder reads
// chat_template.jinja before tokenizer_config.json's).
void save_chat_template(const TrainOptions& o, const Prepared& p, const fs::path& dir) {
  if (!p.saves_template) return;
  std::ofstream out(dir / io::kChatTemplateFile, std::ios::binary);
  out << p.loader->chat_template()->source();
  FT_CHECK(out.good(), "train", (dir / io::kChatTemplateFile).string(), ": cannot write");
}

// Note [Checkpoints load as outputs]
// Each checkpoint also holds what the run's output would be at its step, so that any of
// them is usable as it is: LoRA and DoRA write the adapter to step-N/adapter/ (which
// --adapter finds from step-N too), and full fine-tuning writes config.json and the
// tokenizer beside the checkpoint's model.safetensors, which holds every weight (the f32
// masters in mixed precision, unless --no-master-weights), so step-N is a model folder.
train::CheckpointFiles checkpoint_files(const TrainOptions& o, const Prepared& p,
                                        const nn::Module& model, const nn::LoraConfig& lora) {
  if (o.method == "full") {
    const mx::Dtype weights = o.no_master_weights ? parse_float_dtype(o.dtype) : mx::float32;
    return [&o, &p, weights](const fs::path& folder) {
      io::write_model_files(models::loaded_config(io::read_config(o.model)), folder, model_files(o),
                            weights);
      save_chat_template(o, p, folder);
    };
  }
  return [&o, &p, &model, lora](const fs::path& folder) {
    save_adapter(o, model, lora, folder / "adapter");
    save_chat_template(o, p, folder / "adapter");
  };
}

// Note [A run's settings]
// The output folder keeps the options of the run that made it as run.json. A run started
// on a folder whose checkpoints another run wrote is refused, naming each option whose
// value differs (the trainer's config hash catches only what shapes the batches; a
// changed rank or learning rate would otherwise fail deep in loading, or resume silently
// into another run), except the ones that may change between sessions of one run.
void check_run_settings(const TrainOptions& o) {
  static const std::set<std::string> may_change = {"config",
                                                   "output_dir",
                                                   "overwrite",
                                                   "stop_after",
                                                   "save_every",
                                                   "keep_checkpoints",
                                                   "save_best",
                                                   "memory_budget_gib",
                                                   "memory_limit_gib",
                                                   "skip_bad_records",
                                                   "tensorboard",
                                                   "shard_optimizer_state",
                                                   "events"};
  const fs::path file = fs::path(o.output_dir) / "run.json";
  std::error_code ec;
  if (!fs::is_regular_file(file, ec) ||
      !train::latest_checkpoint(fs::path(o.output_dir) / "checkpoints"))
    return;
  std::ifstream in(file);
  const nlohmann::json before = nlohmann::json::parse(in, nullptr, false);
  const nlohmann::json now = o;
  std::string changed;
  if (before.is_object())
    for (const auto& [key, value] : now.items())
      if (!may_change.count(key) && before.contains(key) && before[key] != value)
        changed +=
            (changed.empty() ? "" : ", ") + key + " " + before[key].dump() + " -> " + value.dump();
  FT_CHECK(changed.empty(), "train", o.output_dir,
           " holds checkpoints of a run with other settings (", changed,
           "); run with the same settings to resume it, or start again with --overwrite or "
           "another --output-dir");
}

void record_run(const TrainOptions& o) {
  const fs::path file = fs::path(o.output_dir) / "run.json";
  std::ofstream out(file, std::ios::binary);
  out << nlohmann::json(o).dump(2) << "\n";
  FT_CHECK(out.good(), "train", file.string(), ": cannot write");
}

void run_train(TrainOptions o) {
  if (!o.overwrite) check_run_settings(o);  // before anything is loaded
  auto start = std::chrono::steady_clock::now();
  // Before the memory check, whose plan reads it (Note [Memory on MLX's CUDA backend]).
  if (o.memory_limit_gib > 0)
    mx::set_memory_limit(static_cast<size_t>(o.memory_limit_gib * double(1ull << 30)));
  check_router_aux_loss(o);
  nn::LoraConfig lora = lora_config(o);
  check_output_folder(o.output_dir);  // created once everything else has been checked
  Prepared p = prepare_data(o);
  check_teacher(o);
  models::check_quantized_training(io::read_config(o.model), o.quantize_bits, o.quantize_group_size,
                                   o.method == "full");
  print_split(*p.train);
  if (p.valid) print_split(*p.valid);
  mx::Dtype dtype = parse_float_dtype(o.dtype);
  // LoRA adapters stay f32 over a low-precision base (lora.dtype); full fine-tuning trains
  // low-precision parameters through f32 masters (Note [Master weights] in ft/train/step.cpp).
  auto model = models::load_model(o.model, dtype);
  if (o.quantize_bits > 0) {
    auto quantized = models::quantize_model(*model, {o.quantize_group_size, o.quantize_bits});
    std::cout << "quantized " << quantized.size() << " layers to " << o.quantize_bits
              << " bits (groups of " << o.quantize_group_size << ")\n";
  }
  model->set_gradient_checkpointing(o.grad_checkpoint);
  if (o.router_aux_loss >= 0) model->set_router_aux_loss(o.router_aux_loss);
  if (!o.adapter.empty()) {
    // Saved again with the settings it was trained with (alpha, dropout, rsLoRA, DoRA).
    uint64_t seed = lora.seed;
    const io::ModulePrefix prefix = models::peft_module_prefix(io::read_config(o.model));
    lora = io::load_adapter(o.adapter, model.get(), prefix).config;
    lora.seed = seed;
    io::apply_adapter(*model, o.adapter, mx::float32, prefix);
  } else if (o.method != "full") {
    nn::apply_lora(*model, lora);
  }
  fit_memory(o, p, *model);  // before the adapters and casts are evaluated
  mx::eval(model->parameters().arrays());
  std::cout << "model: " << o.model << " (" << model->config().model_type << "), "
            << model->num_parameters() << " parameters, " << model->num_trainable_parameters()
            << " trained (" << o.method << ")\n";

  auto optimizer = make_optimizer(optimizer_config(o, p.total_steps));
  train::TrainerConfig t;
  t.iterations = o.iterations;
  t.epochs = o.epochs;
  t.batch_size = o.batch_size;
  t.grad_accumulation = o.grad_accumulation;
  if (o.max_grad_norm > 0) t.max_grad_norm = o.max_grad_norm;
  t.seed = o.seed;
  t.eval_every = o.eval_every;
  t.patience = o.patience;
  t.save_every = o.save_every;
  t.keep_checkpoints = o.keep_checkpoints;
  t.save_best = o.save_best && t.eval_every > 0;
  t.checkpoint_files = checkpoint_files(o, p, *model, lora);
  t.output_dir = o.output_dir;
  t.progress = false;  // the console sink below draws it
  t.run_config = o;
  t.metrics_path = fs::path(o.output_dir) / "metrics.jsonl";
  t.max_steps_this_run = o.stop_after;
  t.master_weights = !o.no_master_weights;
  // A rank of ft launch's (Note [Data parallelism] in ft/train/data_parallel.cpp): rank 0
  // writes the outputs and speaks; the others train beside it.
  t.parallel = std::make_shared<const train::DataParallel>(train::DataParallel::from_environment());
  const bool writer = t.parallel->rank() == 0;
  t.shard_optimizer_state = o.shard_optimizer_state;
  if (!t.parallel->alone())
    std::cout << "rank " << t.parallel->rank() << " of " << t.parallel->size() << " ("
              << t.parallel->backend() << ")\n";
  if (dtype == mx::float16)
    t.loss_scale = LossScaleConfig{.growth_interval = o.loss_scale_interval};
  LossFn loss = train::causal_lm_loss(o.pack);
  if (!o.teacher.empty()) {
    std::shared_ptr<models::CausalLM> teacher = models::load_model(o.teacher, dtype);
    train::DistillOptions distill{.weight = o.distill_weight, .temperature = o.distill_temperature};
    loss = train::causal_lm_distill_loss(teacher, *model, distill, o.pack);
    std::cout << "teacher: " << o.teacher << ", weight " << o.distill_weight << ", temperature "
              << o.distill_temperature << "\n";
  }
  std::error_code ec;
  if (o.overwrite && writer) {
    for (const char* name :
         {"checkpoints", "best", "metrics.jsonl", "adapter", "model", "loss.svg"}) {
      fs::remove_all(fs::path(o.output_dir) / name, ec);
      FT_CHECK(!ec, "train", (fs::path(o.output_dir) / name).string(),
               ": cannot delete: ", ec.message());
    }
  }
  fs::create_directories(o.output_dir, ec);
  FT_CHECK(!ec, "train", o.output_dir, ": cannot create the output folder: ", ec.message());
  if (writer) record_run(o);
  t.parallel->barrier();  // the output folder is ready for every rank
  train::Trainer trainer(*model, loss, train::causal_lm_eval(o.pack), *optimizer, p.train->data,
                         p.valid ? &p.valid->data : nullptr, p.batch, t);
  try {
    trainer.resume();  // the console sink says so when the run starts
  } catch (const Error& e) {
    throw Error(e.place(), e.fact() + " (--overwrite starts again in " + o.output_dir + ")");
  }
  // A bar that owns its line on a terminal, plain lines otherwise; TensorBoard on request.
  // (The trainer sends events on rank 0 only.)
  trainer.add_sink(
      std::make_shared<train::ConsoleSink>(train::ConsoleSink::style_for_this_terminal()));
  if (!o.tensorboard.empty())
    trainer.add_sink(std::make_shared<train::TensorBoardSink>(o.tensorboard));
  if (!o.events.empty()) trainer.add_sink(std::make_shared<train::EventsFileSink>(o.events));
  train::clear_stop_request();
  auto previous = std::signal(SIGINT, on_sigint);
  train::TrainResult result = trainer.run();
  std::signal(SIGINT, previous);
  if (!result.steps.empty() && writer)
    train::write_loss_plot(fs::path(o.output_dir) / "metrics.jsonl",
                           fs::path(o.output_dir) / "loss.svg");

  fs::path adapter_dir = fs::path(o.output_dir) / (o.method == "full" ? "model" : "adapter");
  bool finished = result.reason == train::StopReason::finished ||
                  result.reason == train::StopReason::early_stopped;
  std::optional<train::BestCheckpoint> best;
  if (finished) {
    best = trainer.restore_best();  // with --save-best: the output is the best step's
    if (writer) {
      if (o.method == "full") {
        io::save_model_folder(model->parameters(), models::loaded_config(io::read_config(o.model)),
                              adapter_dir, model_files(o));
      } else {
        save_adapter(o, *model, lora, adapter_dir);
      }
      save_chat_template(o, p, adapter_dir);
    }
  }
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const char* reason = result.reason == train::StopReason::finished         ? "finished"
                       : result.reason == train::StopReason::early_stopped  ? "stopped early"
                       : result.reason == train::StopReason::stop_requested ? "interrupted"
                                                                            : "step limit";
  std::printf("%s at step %lld of %lld in %.1f s", reason, static_cast<long long>(result.step),
              static_cast<long long>(trainer.total_steps()), seconds);
  if (!result.steps.empty()) {
    std::printf("; loss %.4f -> %.4f", result.steps.front().loss, result.steps.back().loss);
  }
  if (!result.evals.empty()) std::printf("; val loss %.4f", result.evals.back().loss);
  std::printf("\n");
  if (best)
    std::printf(
        "best: step %lld, val loss %.4f (saved as the output; --no-save-best keeps the "
        "last step's)\n",
        static_cast<long long>(best->step), best->val_loss);
  if (finished) {
    std::cout << "saved " << adapter_dir.string() << "\n";
  } else if (result.last_checkpoint) {
    std::cout << "checkpoint " << result.last_checkpoint->string() << " (run again to resume)\n";
  }
  if (result.reason == train::StopReason::stop_requested) {
    // Ctrl-C: the checkpoint is saved; exit as an interrupted command does.
    std::cout.flush();
    std::exit(130);
  }
}

void run_validate(const TrainOptions& o) {
  check_router_aux_loss(o);
  Prepared p = prepare_data(o);
  auto config = io::read_config(o.model);
  models::check_quantized_training(config, o.quantize_bits, o.quantize_group_size,
                                   o.method == "full");
  models::Config c = models::from_hf_config(config);
  make_optimizer(optimizer_config(o, p.total_steps));
  nn::LoraConfig lora = lora_config(o);
  check_teacher(o);
  std::cout << "model: " << o.model << " (" << c.model_type << ", " << c.num_hidden_layers
            << " layers, hidden " << c.hidden_size << ")\n";
  for (const auto& s : p.splits) print_split(s);
  if (o.batch_size > 0)
    std::cout << "steps: " << p.total_steps << " (batch " << o.batch_size << " x "
              << o.grad_accumulation << ")\nok\n";
  else
    std::cout << "steps: counted when training picks the batch size (auto)\nok\n";
}

}  // namespace

void add_train_command(CLI::App& app) {
  auto o = std::make_shared<TrainOptions>();
  auto* cmd = app.add_subcommand("train", "Fine-tune a model folder on a dataset");
  add_train_options(cmd, *o);
  auto q = std::make_shared<TrainOptions>();
  auto* quick = cmd->add_subcommand(
      "quick",
      "Fine-tune with defaults: LoRA r8 on the attention projections, lr 1e-4 with warmup, "
      "one epoch up to 200 steps");
  quick->add_option("model", q->model, kModelHelp)->required();
  quick->add_option("data", q->data, "JSONL file or data folder")->required();
  quick->add_option("--output-dir", q->output_dir, "Output folder")->capture_default_str();
  add_seed_option(quick, q->seed, "the data order, dropout and adapter init");
  quick->callback([q] {
    TrainOptions o = *q;
    resolve_models(o);  // no YAML here
    o.warmup_steps = 10;
    Prepared p = prepare_data(o);
    o.iterations = std::min<int64_t>(200, p.total_steps);
    o.warmup_steps = std::min<int64_t>(10, o.iterations / 10);
    run_train(o);
  });
  // ft train start MODEL DATA [options] and ft train validate ...: the specification's
  // spelling of ft train and ft validate, with the same options.
  auto s = std::make_shared<TrainOptions>();
  auto* start = cmd->add_subcommand("start", "The same as ft train MODEL DATA [options]");
  add_train_options(start, *s);
  start->callback([start, s] {
    finish_train_options(start, *s);
    run_train(*s);
  });
  auto v = std::make_shared<TrainOptions>();
  auto* validate =
      cmd->add_subcommand("validate",
                          "The same as ft validate: check a training config and its data without "
                          "training");
  add_train_options(validate, *v);
  validate->callback([validate, v] {
    finish_train_options(validate, *v);
    run_validate(*v);
  });
  cmd->callback([cmd, quick, start, validate, o] {
    if (quick->parsed() || start->parsed() || validate->parsed()) return;
    finish_train_options(cmd, *o);
    run_train(*o);
  });
}

void add_validate_command(CLI::App& app) {
  auto o = std::make_shared<TrainOptions>();
  auto* cmd = app.add_subcommand(
      "validate", "Check a training config (YAML or options) and its data without training");
  add_train_options(cmd, *o);
  cmd->callback([cmd, o] {
    finish_train_options(cmd, *o);
    run_validate(*o);
  });
}

}  // namespace ft::cli
