#include "ft/train/trainer.h"

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>

#include <mlx/memory.h>
#include <mlx/ops.h>
#include <mlx/random.h>
#include <mlx/transforms.h>
#include <mlx/utils.h>  // operator<< for Dtype
#include <nlohmann/json.hpp>

#include "ft/core/error.h"
#include "ft/train/checkpoint.h"
#include "ft/train/optimizer.h"

namespace ft::train {

namespace fs = std::filesystem;

namespace {

std::atomic<bool> g_stop{false};
static_assert(std::atomic<bool>::is_always_lock_free, "request_stop must be signal-safe");

// FNV-1a, 64 bits: stable across platforms and runs, unlike std::hash.
std::string fnv1a_hex(const std::string& text) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : text) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  char out[17];
  std::snprintf(out, sizeof(out), "%016llx", static_cast<unsigned long long>(h));
  return out;
}

// Everything that changes which batches, keys and updates a step sees. Output paths,
// the save interval and max_steps_this_run do not, so they may differ on resume.
std::string hash_settings(const TrainerConfig& c, const data::BatchOptions& b,
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
  return fnv1a_hex(s.str());
}

std::string step_json(const StepRecord& r) {
  nlohmann::json j;
  j["step"] = r.step;
  j["loss"] = r.loss;
  j["learning_rate"] = r.learning_rate;
  j["grad_norm"] = r.grad_norm;
  j["tokens"] = r.tokens;
  j["tokens_per_second"] = r.tokens_per_second;
  j["loss_scale"] = r.loss_scale;
  j["skipped"] = r.skipped;
  j["peak_memory"] = mx::get_peak_memory();
  return j.dump();
}

std::string eval_json(const EvalRecord& r) {
  nlohmann::json j;
  j["step"] = r.step;
  j["val_loss"] = r.loss;
  j["val_ppl"] = r.perplexity;
  j["val_accuracy"] = r.accuracy;
  j["val_tokens"] = r.tokens;
  return j.dump();
}

// Keeps the records of steps up to `step`: those after it are run again after a resume.
void truncate_metrics(const fs::path& path, int64_t step) {
  std::ifstream in(path);
  if (!in) return;
  std::string kept, line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.contains("step")) continue;  // a line cut by a crash
    if (j["step"].get<int64_t>() <= step) kept += line + "\n";
  }
  in.close();
  fs::path temp = path;
  temp += ".tmp";
  {
    std::ofstream out(temp, std::ios::trunc);
    FT_CHECK(out, "trainer", temp.string(), ": cannot open for writing");
    out << kept;
  }
  fs::rename(temp, path);
}

void draw_progress(int64_t step, int64_t total, const StepRecord& r) {
  constexpr int kWidth = 30;
  int filled = total > 0 ? int(kWidth * std::min<int64_t>(step, total) / total) : 0;
  std::string bar(size_t(filled), '#');
  bar.resize(kWidth, '.');
  std::fprintf(stderr, "\r[%s] %lld/%lld loss %.4f lr %.2e %.0f tok/s", bar.c_str(),
               static_cast<long long>(step), static_cast<long long>(total), r.loss, r.learning_rate,
               r.tokens_per_second);
  if (step >= total) std::fprintf(stderr, "\n");
  std::fflush(stderr);
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
    mx::eval(out.loss_sum, out.tokens, out.correct);
    return out;
  }
  mx::eval(model.parameters().arrays());  // Note [Row shards on the CPU]
  std::vector<mx::array> sums = shards.sum(batch, n, [&](const Batch& rows, int) {
    EvalOutput out = eval_fn(model, rows);
    return std::vector<mx::array>{out.loss_sum, out.tokens, out.correct};
  });
  mx::eval(sums);
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
                             .master_weights = config_.master_weights}),
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
  valid_options_ = batch_options;
  valid_options_.batch_size =
      config_.eval_batch_size > 0 ? config_.eval_batch_size : config_.batch_size;
  valid_options_.shuffle = false;
  config_hash_ =
      hash_settings(config_, with_config(batch_options, config_), train, optimizer_, model_);
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
  FT_CHECK(c.state.config_hash == config_hash_, "trainer", folder->string(),
           ": written by a run with other settings (config hash ", c.state.config_hash,
           ", this run ", config_hash_, ")");
  try {
    train_step_.load_masters(c.weights);
  } catch (const Error& e) {
    throw Error("trainer", (*folder / "model.safetensors").string() + ": " + e.fact());
  }
  optimizer_.load_state(c.optimizer);
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
  if (!config_.metrics_path.empty()) truncate_metrics(config_.metrics_path, step_);
  return step_;
}

Checkpoint Trainer::make_checkpoint() {
  Checkpoint c;
  c.weights = train_step_.masters();
  c.optimizer = optimizer_.state();
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
  return c;
}

std::optional<fs::path> Trainer::save() {
  if (config_.output_dir.empty()) return std::nullopt;
  fs::path folder =
      write_checkpoint(checkpoint_root(), make_checkpoint(), config_.checkpoint_files);
  if (config_.keep_checkpoints > 0) prune_checkpoints(checkpoint_root(), config_.keep_checkpoints);
  return folder;
}

void Trainer::save_best() {
  if (config_.output_dir.empty()) return;
  const fs::path root = config_.output_dir / "best";
  // Only the weights: the run never resumes from here, and optimizer state can be twice
  // their size.
  Checkpoint c = make_checkpoint();
  c.optimizer = ParamMap();
  write_checkpoint(root, c, config_.checkpoint_files);
  prune_checkpoints(root, 1);
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

void Trainer::write_metrics(const std::string& line) {
  if (config_.metrics_path.empty()) return;
  std::ofstream out(config_.metrics_path, std::ios::app);
  FT_CHECK(out, "trainer", config_.metrics_path.string(), ": cannot open for writing");
  out << line << "\n";
  out.flush();
  FT_CHECK(out, "trainer", config_.metrics_path.string(), ": write failed");
}

EvalRecord Trainer::evaluate() {
  FT_CHECK(valid_ && eval_fn_, "trainer", "evaluate needs a validation set and an eval function");
  bool was_training = model_.training();
  model_.eval();
  data::Batcher batcher(*valid_, valid_options_);
  double loss_sum = 0, tokens = 0, correct = 0;
  for (int64_t i = 0; i < batcher.batches_per_epoch(0); ++i) {
    data::Batch b = batcher.batch({0, i});
    if (b.trained_tokens == 0) continue;
    EvalOutput out = evaluate_batch(model_, eval_fn_, to_step_batch(b), eval_shards_);
    loss_sum += out.loss_sum.item<float>();
    tokens += mx::astype(out.tokens, mx::float64, mx::Device::cpu).item<double>();
    correct += mx::astype(out.correct, mx::float64, mx::Device::cpu).item<double>();
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

TrainResult Trainer::run() {
  if (step_ == 0 && !config_.metrics_path.empty()) {
    std::ofstream truncate(config_.metrics_path, std::ios::trunc);
    FT_CHECK(truncate, "trainer", config_.metrics_path.string(), ": cannot open for writing");
  }
  bool show_progress = config_.progress && ::isatty(STDERR_FILENO);
  int64_t total = total_steps();
  int64_t last_saved = -1;
  TrainResult result;
  int64_t steps_this_run = 0;
  model_.train();
  while (true) {
    if (done()) {
      result.reason = StopReason::finished;
      break;
    }
    if (stop_requested()) {
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
      micro.push_back(to_step_batch(batcher_.batch(position_)));
      position_ = batcher_.next(position_);
      keys.push_back(rng_.next());
    }
    StepResult s = train_step_.run(micro, keys);
    double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    ++step_;
    ++steps_this_run;

    StepRecord r{step_,        s.loss,   s.learning_rate,
                 s.grad_norm,  s.tokens, seconds > 0 ? s.tokens / seconds : 0.0,
                 s.loss_scale, s.skipped};
    result.steps.push_back(r);
    write_metrics(step_json(r));
    if (show_progress) draw_progress(step_, total, r);
    if (on_step_) on_step_(r);

    bool early_stop = false;
    if (config_.eval_every > 0 && step_ % config_.eval_every == 0) {
      EvalRecord e = evaluate();
      result.evals.push_back(e);
      write_metrics(eval_json(e));
      if (!best_val_loss_ || e.loss < *best_val_loss_) {
        best_val_loss_ = e.loss;
        evals_without_improvement_ = 0;
        if (config_.save_best) save_best();
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
  if (show_progress && result.reason != StopReason::finished) std::fprintf(stderr, "\n");
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
