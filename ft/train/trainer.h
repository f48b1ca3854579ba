// Trainer: runs training steps over a dataset for a number of iterations or epochs,
// evaluates on a validation set, stops early, writes metrics and checkpoints, and resumes
// from the last checkpoint so exactly that the per-step losses of an interrupted and
// resumed run equal those of an uninterrupted one (bit for bit on CPU).
//
// Each micro-batch reaches the loss function as {inputs, targets, segment_ids, positions},
// all (rows, length) int32 (ft::data::Batch; targets hold kIgnoreIndex where no loss is
// taken). A step reads grad_accumulation micro-batches and draws one random key per
// micro-batch from an Rng seeded with TrainerConfig::seed.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ft/core/random.h"
#include "ft/data/batching.h"
#include "ft/data/tokenized.h"
#include "ft/nn/module.h"
#include "ft/train/checkpoint.h"  // defines: Checkpoint, CheckpointFiles
#include "ft/train/data_parallel.h"
#include "ft/train/events.h"  // defines: EventSink, TrainEvent, StepRecord, EvalRecord
#include "ft/train/step.h"

namespace ft::train {

// A data::Batch as the step reads it: {inputs, targets, segment_ids, positions}.
Batch to_step_batch(const data::Batch& b);

struct TrainerConfig {
  int64_t iterations = 0;     // optimizer steps; 0: run `epochs` passes over the data
  int64_t epochs = 1;         // used when iterations == 0: stop once this many are done
  int batch_size = 4;         // rows per micro-batch (overrides BatchOptions::batch_size)
  int grad_accumulation = 1;  // micro-batches per optimizer step
  std::optional<float> max_grad_norm;
  // Dynamic loss scaling for float16 models (precision.h); none: off.
  std::optional<LossScaleConfig> loss_scale;
  uint64_t seed = 0;  // the Rng of the step keys and the data order (BatchOptions::seed)
  bool compile = true;
  bool master_weights = true;  // StepConfig::master_weights

  int64_t eval_every = 0;   // steps between validation passes; 0: never
  int eval_batch_size = 0;  // 0: batch_size
  int64_t patience = 0;     // stop after this many evaluations without a lower val loss; 0: never
  int64_t save_every = 0;   // steps between checkpoints; 0: only when the run stops
  std::filesystem::path output_dir;    // checkpoints go to output_dir/checkpoints; empty: none
  std::filesystem::path metrics_path;  // JSONL (MetricsFileSink); empty: none
  int64_t max_steps_this_run = 0;      // stop (and save) after this many steps; 0: no limit
  int keep_checkpoints = 0;            // keep the checkpoints of the last N saves only; 0: all
  // Keep the weights of the lowest validation loss as a checkpoint in output_dir/best
  // (restore_best() loads them back).
  bool save_best = false;
  CheckpointFiles checkpoint_files;  // added to every checkpoint (checkpoint.h)
  bool progress = true;              // a progress bar on stderr when it is a terminal (ConsoleSink)
  nlohmann::json run_config;         // the caller's settings, sent with the started event
  // The ranks of a data-parallel run (data_parallel.h); null: one process. Rank 0 alone
  // writes checkpoints and sends events to the sinks.
  std::shared_ptr<const DataParallel> parallel;
  bool shard_optimizer_state = false;  // StepConfig::shard_optimizer_state
};

// Validation of one batch: the summed loss, the count of predicted tokens and how many
// of them were predicted right (argmax == target).
struct EvalOutput {
  mx::array loss_sum;  // () f32
  mx::array tokens;    // () count
  mx::array correct;   // () count
};
using EvalFn = std::function<EvalOutput(nn::Module& model, const Batch& batch)>;

// eval_fn on one batch, its rows split over `shards` on the CPU (row_shards.h) with the
// shards' sums added in shard order; evaluated when it returns. eval_fn may run on several
// threads at once: it must only read the model.
EvalOutput evaluate_batch(nn::Module& model, const EvalFn& eval_fn, const Batch& batch,
                          RowShards& shards);

struct TrainResult {
  std::vector<StepRecord> steps;  // the steps run by this call
  std::vector<EvalRecord> evals;
  StopReason reason = StopReason::finished;
  int64_t step = 0;  // steps done in total, including those before a resume
  std::optional<std::filesystem::path> last_checkpoint;
};

// A best checkpoint: its step and validation loss.
struct BestCheckpoint {
  std::filesystem::path folder;
  int64_t step = 0;
  double val_loss = 0;
};

// Asks every running Trainer to stop after its current step and save a checkpoint. Only
// stores to a lock-free atomic, so a SIGINT handler may call it.
void request_stop();
bool stop_requested();
void clear_stop_request();

class Trainer {
 public:
  // The model, optimizer and data must outlive the Trainer. eval_fn may be empty when
  // valid is null or eval_every is 0. Throws ft::Error for inconsistent settings.
  Trainer(nn::Module& model, LossFn loss_fn, EvalFn eval_fn, Optimizer& optimizer,
          const data::TokenizedData& train, const data::TokenizedData* valid,
          data::BatchOptions batch_options, TrainerConfig config);

  // Loads the latest complete checkpoint under output_dir/checkpoints, if any: weights
  // (the f32 masters of a mixed-precision run), optimizer state, loss scaler, RNG, data
  // position, step and early-stopping counters, and drops the
  // records of later steps from the metrics file. Returns the step it resumed at (0 when
  // there was no checkpoint). Throws ft::Error when the checkpoint was written with other
  // settings (config hash) or does not fit the model.
  int64_t resume();

  // Trains until the iterations or epochs are done, early stopping, a stop request or
  // max_steps_this_run; saves a checkpoint then (when output_dir is set) and every
  // save_every steps.
  TrainResult run();

  // Validation loss, perplexity and accuracy over every token of the validation set.
  EvalRecord evaluate();

  // With save_best: loads the weights of the best checkpoint (output_dir/best) into the
  // model and returns it; nullopt, leaving the model as it is, when there is none.
  std::optional<BestCheckpoint> restore_best();

  // Called after every step, e.g. to report progress elsewhere.
  void on_step(std::function<void(const StepRecord&)> callback) { on_step_ = std::move(callback); }
  // Sends every event of run() to sink as well (events.h).
  void add_sink(std::shared_ptr<EventSink> sink) { sinks_.push_back(std::move(sink)); }

  int64_t step() const { return step_; }
  // Total optimizer steps of the run (iterations, or the steps that cover `epochs`).
  int64_t total_steps() const;
  // A hash of the settings that shape the trajectory (the TrainerConfig and BatchOptions
  // fields that choose batches, keys and steps, the loss scaling, the dtypes of the
  // model's parameters when not all f32, the training data's size and the optimizer's
  // name; not the learning rate or schedule, which are functions); a
  // checkpoint must match it.
  const std::string& config_hash() const { return config_hash_; }
  std::filesystem::path checkpoint_root() const;

 private:
  // Note [Data parallelism]: this rank, the number of ranks, and whether this rank writes
  // (rank 0: checkpoints, events).
  int rank() const { return config_.parallel ? config_.parallel->rank() : 0; }
  int ranks() const { return config_.parallel ? config_.parallel->size() : 1; }
  bool writes() const { return rank() == 0; }
  bool done() const;
  // The run's state now; with_optimizer false leaves the optimizer's state out (the best
  // weights need none).
  Checkpoint make_checkpoint(bool with_optimizer = true);
  std::optional<std::filesystem::path> save();
  void save_best();
  TrainResult run_steps();
  void emit(TrainEvent event);

  nn::Module& model_;
  EvalFn eval_fn_;
  Optimizer& optimizer_;
  const data::TokenizedData* valid_;
  data::BatchOptions valid_options_;
  TrainerConfig config_;
  data::Batcher batcher_;
  TrainStep train_step_;
  RowShards eval_shards_;
  Rng rng_;
  std::string settings_;  // what config_hash_ hashes
  std::string config_hash_;

  int64_t step_ = 0;
  data::Position position_;
  std::optional<double> best_val_loss_;
  int64_t evals_without_improvement_ = 0;
  std::function<void(const StepRecord&)> on_step_;
  std::vector<std::shared_ptr<EventSink>> sinks_;
  std::chrono::steady_clock::time_point session_start_;
  int64_t session_first_step_ = 0;
};

}  // namespace ft::train
