#include "ft/train/trainer.h"

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include <mlx/memory.h>
#include <mlx/ops.h>
#include <mlx/random.h>
#include <mlx/transforms.h>
#include <mlx/utils.h>  // operator<< for Dtype
#include <nlohmann/json.hpp>

#include "ft/core/error.h"
#include "ft/core/evaluate.h"  // defines: evaluate, rethrow_named
#include "ft/core/hash.h"  // defines: fnv1a
#include "ft/core/log.h"
#include "ft/train/checkpoint.h"
#include "ft/train/event_sinks.h"  // defines: MetricsFileSink, ConsoleSink
#include "ft/train/optimizer.h"

namespace ft::train {

namespace fs = std::filesystem;

namespace {

std::atomic<bool> g_stop{false};
static_assert(std::atomic<bool>::is_always_lock_free, "request_stop must be signal-safe");

std::string fnv1a_hex(const std::string& text) {
  char out[17];
  std::snprintf(out, sizeof(out), "%016llx", static_cast<unsigned long long>(fnv1a(text)));
  return out;
}

// Everything that changes which batches, keys and updates a step sees, as "key=value;...".
// Output paths, the save interval and max_steps_this_run do not, so they may differ on
// resume.
std::string settings_text(const TrainerConfig& c, const data::BatchOptions& b,
                          const data::TokenizedData& train, const Optimizer& optimizer,
                          const nn::Module& model) {
  std::ostringstream s;
  s << "iterations=" << c.iterations << ";epochs=" << c.epochs << ";batch=" << c.batch_size
    << ";accumulation=" << c.grad_accumulation
    << ";clip=" << (c.max_grad_norm ? std::to_string(*c.max_grad_norm) : "none")
    << ";seed=" << c.seed << ";eval_every=" << c.eval_every << ";patience=" << c.patience
    << ";max_seq_length=" << b.max_seq_length << ";pack=" << b.pack
    << ";pad_multiple=" << b.pad_multiple << ";pad_id=" << b.pad_id << ";shuffle=" << b.shuffle
    << ";samples=" << train.size() << ";tokens=" << train.total_tokens()
    << ";optimizer=" << optimizer.name();
  // Added only when used, so the hashes of float32 runs without scaling stay as they were.
  if (c.loss_scale)
    s << ";loss_scale=" << c.loss_scale->initial_scale << "/" << c.loss_scale->growth_interval;
  if (!c.master_weights) s << ";master_weights=off";
  if (optimizer.state_dtype() != mx::float32) s << ";state_dtype=" << optimizer.state_dtype();
  std::set<std::string> dtypes;
  for (const auto& [name, value] : model.parameters()) {
    std::ostringstream d;
    d << value.dtype();
    dtypes.insert(d.str());
  }
  if (dtypes != std::set<std::string>{"float32"})
    for (const auto& d : dtypes) s << ";dtype=" << d;
  return s.str();
}

// "key=value;..." as a map; a key given twice keeps both values.
std::map<std::string, std::string> settings_map(const std::string& text) {
  std::map<std::string, std::string> out;
  std::istringstream in(text);
  std::string item;
  while (std::getline(in, item, ';')) {
    const size_t eq = item.find('=');
    if (eq == std::string::npos) continue;
    std::string& value = out[item.substr(0, eq)];
    value += (value.empty() ? "" : ",") + item.substr(eq + 1);
  }
  return out;
}

// What differs between a checkpoint's settings and this run's: "batch 4 -> 8, seed 0 -> 1".
std::string changed_settings(const std::string& before, const std::string& now) {
  if (before.empty()) return "";  // a checkpoint of an older ft keeps the hash only
  const auto a = settings_map(before), b = settings_map(now);
  std::set<std::string> keys;
  for (const auto& [k, v] : a) keys.insert(k);
  for (const auto& [k, v] : b) keys.insert(k);
  std::string out;
  for (const std::string& k : keys) {
    const std::string x = a.count(k) ? a.at(k) : "(none)", y = b.count(k) ? b.at(k) : "(none)";
    if (x != y) out += (out.empty() ? "" : ", ") + k + " " + x + " -> " + y;
  }
  return out;
}

data::BatchOptions with_config(data::BatchOptions options, const TrainerConfig& c) {
  options.batch_size = c.batch_size;
  options.seed = c.seed;
  return options;
}

}  // namespace

EvalOutput evaluate_batch(nn::Module& model, const EvalFn& eval_fn, const Batch& batch,
                          RowShards& shards) {
  int n = batch_row_shards(batch);
  if (n == 1) {
    EvalOutput out = eval_fn(model, batch);
    ft::evaluate({out.loss_sum, out.tokens, out.correct});
    return out;
  }
  mx::eval(model.parameters().arrays());  // Note [Row shards on the CPU]
  std::vector<mx::array> sums = shards.sum(batch, n, [&](const Batch& rows, int) {
    EvalOutput out = eval_fn(model, rows);
    return std::vector<mx::array>{out.loss_sum, out.tokens, out.correct};
  });
  ft::evaluate(sums);
  return EvalOutput{sums[0], sums[1], sums[2]};
}

void request_stop() {
  g_stop.store(true);
}
bool stop_requested() {
  return g_stop.load();
}
void clear_stop_request() {
  g_stop.store(false);
}

Trainer::Trainer(nn::Module& model, LossFn loss_fn, EvalFn eval_fn, Optimizer& optimizer,
                 const data::TokenizedData& train, const data::TokenizedData* valid,
                 data::BatchOptions batch_options, TrainerConfig config)
    : model_(model),
      eval_fn_(std::move(eval_fn)),
      optimizer_(optimizer),
      valid_(valid),
      config_(std::move(config)),
      batcher_(train, with_config(batch_options, config_)),
      train_step_(model, std::move(loss_fn), optimizer,
                  StepConfig{.compile = config_.compile,
                             .max_grad_norm = config_.max_grad_norm,
                             .loss_scale = config_.loss_scale,
                             .master_weights = config_.master_weights,
                             .parallel = config_.parallel.get(),
                             .shard_optimizer_state = config_.shard_optimizer_state}),
      rng_(config_.seed) {
  FT_CHECK(config_.iterations >= 0, "trainer", "iterations must be >= 0, got ", config_.iterations);
  FT_CHECK(config_.iterations > 0 || config_.epochs > 0, "trainer",
           "set iterations or epochs to a positive number");
  FT_CHECK(config_.grad_accumulation > 0, "trainer", "grad_accumulation must be positive, got ",
           config_.grad_accumulation);
  FT_CHECK(config_.eval_every >= 0 && config_.save_every >= 0 && config_.patience >= 0 &&
               config_.max_steps_this_run >= 0,
           "trainer", "eval_every, save_every, patience and max_steps_this_run must be >= 0");
  FT_CHECK(config_.eval_every == 0 || (valid_ && eval_fn_), "trainer",
           "eval_every needs a validation set and an eval function");
  FT_CHECK(config_.patience == 0 || config_.eval_every > 0, "trainer",
           "early stopping (patience) needs eval_every > 0");
  FT_CHECK(!valid_ || valid_->size() > 0, "trainer", "the validation set is empty");
  FT_CHECK(ranks() <= config_.batch_size, "trainer", "a batch of ", config_.batch_size,
           " rows cannot be shared by ", ranks(), " ranks: give --batch-size ", ranks(),
           " or more");
  valid_options_ = batch_options;
  valid_options_.batch_size =
      config_.eval_batch_size > 0 ? config_.eval_batch_size : config_.batch_size;
  valid_options_.shuffle = false;
  settings_ =
      settings_text(config_, with_config(batch_options, config_), train, optimizer_, model_);
  config_hash_ = fnv1a_hex(settings_);
  if (!config_.metrics_path.empty() && writes())
    sinks_.push_back(std::make_shared<MetricsFileSink>(config_.metrics_path));
  if (config_.progress && writes() &&
      ConsoleSink::style_for_this_terminal() == ConsoleSink::Style::bar)
    sinks_.push_back(std::make_shared<ConsoleSink>(ConsoleSink::Style::bar));
}

fs::path Trainer::checkpoint_root() const {
  return config_.output_dir / "checkpoints";
}

int64_t Trainer::total_steps() const {
  if (config_.iterations > 0) return config_.iterations;
  int64_t micro = 0;
  for (int64_t e = 0; e < config_.epochs; ++e) micro += batcher_.batches_per_epoch(e);
  return (micro + config_.grad_accumulation - 1) / config_.grad_accumulation;
}

bool Trainer::done() const {
  if (config_.iterations > 0) return step_ >= config_.iterations;
  return position_.epoch >= config_.epochs;
}

int64_t Trainer::resume() {
  if (config_.output_dir.empty()) return 0;
  auto folder = latest_checkpoint(checkpoint_root());
  if (!folder) return 0;
  Checkpoint c = read_checkpoint(*folder);
  if (c.state.config_hash != config_hash_) {
    const std::string changed = changed_settings(c.state.settings, settings_);
    throw Error("trainer", folder->string() + ": written by a run with other settings (" +
                               (changed.empty() ? "config hash " + c.state.config_hash +
                                                      ", this run " + config_hash_
                                                : changed) +
                               "); run with the same settings to resume, or start again in "
                               "another output folder");
  }
  try {
    train_step_.load_masters(c.weights);
  } catch (const Error& e) {
    throw Error("trainer", (*folder / "model.safetensors").string() + ": " + e.fact());
  }
  train_step_.load_optimizer_state(c.optimizer);
  if (LossScaler* scaler = train_step_.loss_scaler()) {
    FT_CHECK(c.state.loss_scale.has_value(), "trainer", (*folder / "trainer.json").string(),
             ": no loss scaler state, but this run scales the loss");
    scaler->load(*c.state.loss_scale, c.state.loss_scale_good_steps);
  }
  uint32_t rng[2] = {c.state.rng_state[0], c.state.rng_state[1]};
  rng_ = Rng::from_state(mx::array(rng, {2}, mx::uint32));
  step_ = c.state.step;
  position_ = c.state.position;
  best_val_loss_ = c.state.best_val_loss;
  evals_without_improvement_ = c.state.evals_without_improvement;
  if (c.state.ranks != ranks() && writes())
    log::warn("resuming a run of ", c.state.ranks, " rank(s) on ", ranks(),
              ": the data order is the same, the sums across ranks are added in another order, "
              "so losses can differ in the last bits");
  return step_;
}

Checkpoint Trainer::make_checkpoint(bool with_optimizer) {
  Checkpoint c;
  c.weights = train_step_.masters();
  // Every rank takes part: a sharded state is gathered here.
  if (with_optimizer) c.optimizer = train_step_.optimizer_state();
  if (const LossScaler* scaler = train_step_.loss_scaler()) {
    c.state.loss_scale = scaler->scale();
    c.state.loss_scale_good_steps = scaler->good_steps();
  }
  mx::array rng = rng_.state();
  mx::eval(rng);
  c.state.step = step_;
  c.state.position = position_;
  c.state.rng_state = {rng.data<uint32_t>()[0], rng.data<uint32_t>()[1]};
  c.state.best_val_loss = best_val_loss_;
  c.state.evals_without_improvement = evals_without_improvement_;
  c.state.config_hash = config_hash_;
  c.state.settings = settings_;
  c.state.ranks = ranks();
  return c;
}

std::optional<fs::path> Trainer::save() {
  if (config_.output_dir.empty()) return std::nullopt;
  fs::path folder = checkpoint_folder(checkpoint_root(), step_);
  Checkpoint c = make_checkpoint();
  if (writes()) {
    folder = write_checkpoint(checkpoint_root(), c, config_.checkpoint_files);
    if (config_.keep_checkpoints > 0)
      prune_checkpoints(checkpoint_root(), config_.keep_checkpoints);
  }
  if (config_.parallel) config_.parallel->barrier();  // the checkpoint is whole for every rank
  TrainEvent e;
  e.kind = TrainEvent::Kind::checkpoint;
  e.folder = folder;
  emit(std::move(e));
  return folder;
}

void Trainer::save_best() {
  if (config_.output_dir.empty()) return;
  const fs::path root = config_.output_dir / "best";
  // Only the weights: the run never resumes from here, and optimizer state can be twice
  // their size.
  Checkpoint c = make_checkpoint(/*with_optimizer=*/false);
  if (writes()) {
    write_checkpoint(root, c, config_.checkpoint_files);
    prune_checkpoints(root, 1);
  }
  if (config_.parallel) config_.parallel->barrier();
}

std::optional<BestCheckpoint> Trainer::restore_best() {
  if (!config_.save_best || config_.output_dir.empty()) return std::nullopt;
  const auto folder = latest_checkpoint(config_.output_dir / "best");
  if (!folder) return std::nullopt;
  Checkpoint c = read_checkpoint(*folder);
  FT_CHECK(c.state.config_hash == config_hash_ && c.state.best_val_loss, "trainer",
           folder->string(), ": written by a run with other settings (config hash ",
           c.state.config_hash, ", this run ", config_hash_, ")");
  train_step_.load_masters(c.weights);
  return BestCheckpoint{*folder, c.state.step, *c.state.best_val_loss};
}

EvalRecord Trainer::evaluate() {
  FT_CHECK(valid_ && eval_fn_, "trainer", "evaluate needs a validation set and an eval function");
  bool was_training = model_.training();
  model_.eval();
  data::Batcher batcher(*valid_, valid_options_);
  double loss_sum = 0, tokens = 0, correct = 0;
  // Note [Data parallelism]: each rank evaluates every ranks()-th batch.
  for (int64_t i = rank(); i < batcher.batches_per_epoch(0); i += ranks()) {
    data::Batch b = batcher.batch({0, i});
    if (b.trained_tokens == 0) continue;
    EvalOutput out = evaluate_batch(model_, eval_fn_, to_step_batch(b), eval_shards_);
    loss_sum += out.loss_sum.item<float>();
    tokens += mx::astype(out.tokens, mx::float64, mx::Device::cpu).item<double>();
    correct += mx::astype(out.correct, mx::float64, mx::Device::cpu).item<double>();
  }
  if (ranks() > 1) {
    // float32 holds these counts exactly up to 2^24 tokens; the loss sum as its ranks' sum.
    std::vector<mx::array> sums = config_.parallel->sum({mx::array(static_cast<float>(loss_sum)),
                                                         mx::array(static_cast<float>(tokens)),
                                                         mx::array(static_cast<float>(correct))});
    mx::eval(sums);
    loss_sum = sums[0].item<float>();
    tokens = sums[1].item<float>();
    correct = sums[2].item<float>();
  }
  model_.train(was_training);
  FT_CHECK(tokens > 0, "trainer", "the validation set has no trained tokens");
  EvalRecord r;
  r.step = step_;
  r.loss = loss_sum / tokens;
  r.perplexity = std::exp(r.loss);
  r.accuracy = correct / tokens;
  r.tokens = tokens;
  return r;
}

// Note [Trainer events]
// run() sends, in order: started (with the step it starts from and the caller's
// run_config), then per step a step event, an evaluation (and best, when its loss is the
// lowest yet) every eval_every steps, checkpoint after each save, and at the end finished
// with the reason, or failed with the error of an exception, which is then rethrown. The
// metrics file and the progress bar of TrainerConfig are sinks added here; callers add
// theirs with add_sink.
void Trainer::emit(TrainEvent event) {
  if (!writes()) return;
  event.step = step_;
  event.total_steps = total_steps();
  for (const auto& sink : sinks_) sink->on_event(event);
}

TrainResult Trainer::run() {
  session_start_ = std::chrono::steady_clock::now();
  session_first_step_ = step_;
  TrainEvent started;
  started.kind = TrainEvent::Kind::started;
  started.config = config_.run_config;
  if (config_.parallel) config_.parallel->check_same(settings_, "settings or data");
  emit(std::move(started));
  try {
    TrainResult result = run_steps();
    TrainEvent finished;
    finished.kind = TrainEvent::Kind::finished;
    finished.reason = result.reason;
    emit(std::move(finished));
    return result;
  } catch (const std::exception& error) {
    TrainEvent failed;
    failed.kind = TrainEvent::Kind::failed;
    failed.error = error.what();
    try {
      emit(std::move(failed));
    } catch (...) {
      // The run's own error is the one to report.
    }
    throw;
  }
}

TrainResult Trainer::run_steps() {
  int64_t last_saved = -1;
  TrainResult result;
  int64_t steps_this_run = 0;
  model_.train();
  while (true) {
    if (done()) {
      result.reason = StopReason::finished;
      break;
    }
    // Every rank stops at the same step, or the others would wait for it forever.
    const bool stop = config_.parallel ? config_.parallel->any(stop_requested()) : stop_requested();
    if (stop) {
      clear_stop_request();
      result.reason = StopReason::stop_requested;
      break;
    }
    if (config_.max_steps_this_run > 0 && steps_this_run >= config_.max_steps_this_run) {
      result.reason = StopReason::step_limit;
      break;
    }
    auto start = std::chrono::steady_clock::now();
    std::vector<Batch> micro;
    std::vector<mx::array> keys;
    for (int i = 0; i < config_.grad_accumulation; ++i) {
      Batch global = to_step_batch(batcher_.batch(position_));
      micro.push_back(config_.parallel ? config_.parallel->rows(global) : global);
      position_ = batcher_.next(position_);
      keys.push_back(rng_.next());
    }
    StepResult s;
    try {
      s = train_step_.run(micro, keys);
    } catch (const std::runtime_error&) {
      rethrow_named("train", detail::concat("step ", step_ + 1));
    }
    const auto now = std::chrono::steady_clock::now();
    double seconds = std::chrono::duration<double>(now - start).count();
    ++step_;
    ++steps_this_run;

    StepRecord r{step_,        s.loss,   s.learning_rate,
                 s.grad_norm,  s.tokens, seconds > 0 ? s.tokens / seconds : 0.0,
                 s.loss_scale, s.skipped};
    result.steps.push_back(r);
    TrainEvent e;
    e.kind = TrainEvent::Kind::step;
    e.record = r;
    e.elapsed_seconds = std::chrono::duration<double>(now - session_start_).count();
    const int64_t done_here = step_ - session_first_step_;
    if (done_here > 0)
      e.eta_seconds = e.elapsed_seconds / double(done_here) * double(total_steps() - step_);
    e.peak_memory = mx::get_peak_memory();
    const int64_t per_epoch = batcher_.batches_per_epoch(position_.epoch);
    e.epoch = static_cast<double>(position_.epoch) +
              (per_epoch > 0 ? static_cast<double>(position_.index) / double(per_epoch) : 0.0);
    emit(std::move(e));
    if (on_step_) on_step_(r);

    bool early_stop = false;
    if (config_.eval_every > 0 && step_ % config_.eval_every == 0) {
      TrainEvent ev;
      ev.kind = TrainEvent::Kind::evaluation;
      try {
        ev.eval = evaluate();
      } catch (const std::runtime_error&) {
        rethrow_named("train", detail::concat("evaluation after step ", step_));
      }
      result.evals.push_back(ev.eval);
      emit(ev);
      if (!best_val_loss_ || ev.eval.loss < *best_val_loss_) {
        best_val_loss_ = ev.eval.loss;
        evals_without_improvement_ = 0;
        if (config_.save_best) save_best();
        ev.kind = TrainEvent::Kind::best;
        emit(std::move(ev));
      } else {
        ++evals_without_improvement_;
      }
      early_stop = config_.patience > 0 && evals_without_improvement_ >= config_.patience;
    }
    if (config_.save_every > 0 && step_ % config_.save_every == 0) {
      result.last_checkpoint = save();
      last_saved = step_;
    }
    if (early_stop) {
      result.reason = StopReason::early_stopped;
      break;
    }
  }
  if (steps_this_run > 0 && last_saved != step_) {
    auto saved = save();
    if (saved) result.last_checkpoint = saved;
  }
  result.step = step_;
  return result;
}

Batch to_step_batch(const data::Batch& b) {
  return {data::to_mx(b.inputs, b), data::to_mx(b.targets, b), data::to_mx(b.segment_ids, b),
          data::to_mx(b.positions, b)};
}

}  // namespace ft::train
