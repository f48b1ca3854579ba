// What a training run reports as it goes: one event type, handed to any number of sinks
// (the console, metrics.jsonl, TensorBoard, the job service). Note [Trainer events] in
// trainer.cpp says when each is sent.
//
//   trainer.add_sink(std::make_shared<train::ConsoleSink>(train::ConsoleSink::Style::bar));
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

namespace ft::train {

struct StepRecord {
  int64_t step = 0;  // from 1
  float loss = 0;
  float learning_rate = 0;
  float grad_norm = 0;
  double tokens = 0;
  double tokens_per_second = 0;
  float loss_scale = 1;  // the loss scale of the step (1 without loss scaling)
  bool skipped = false;  // the gradients overflowed and the update was skipped
};

struct EvalRecord {
  int64_t step = 0;
  double loss = 0;  // mean over every predicted token of the validation set
  double perplexity = 0;
  double accuracy = 0;
  double tokens = 0;
};

enum class StopReason { finished, early_stopped, stop_requested, step_limit };
// "finished", "stopped early", "interrupted", "step limit".
const char* stop_reason_text(StopReason reason);

struct TrainEvent {
  enum class Kind {
    started,     // step: the step the run starts from (0, or the resumed one); config
    step,        // record, elapsed, eta, peak_memory, epoch
    evaluation,  // eval
    checkpoint,  // folder: a checkpoint was saved
    best,        // eval: a new lowest validation loss (and its weights kept, with save_best)
    finished,    // reason
    failed,      // error: the run stopped on an exception, which the trainer rethrows
  };
  Kind kind = Kind::started;
  int64_t step = 0;                          // optimizer steps done when the event is sent
  int64_t total_steps = 0;                   // of the whole run
  nlohmann::json config;                     // started: the run's settings as the caller gave them
  StepRecord record;                         // step
  EvalRecord eval;                           // evaluation, best
  double elapsed_seconds = 0;                // step: since this session of the run started
  std::optional<double> eta_seconds;         // step: to the last step, at this session's pace
  uint64_t peak_memory = 0;                  // step: MLX's peak memory so far, in bytes
  double epoch = 0;                          // step: passes over the data done, from 0
  std::filesystem::path folder;              // checkpoint
  StopReason reason = StopReason::finished;  // finished
  std::string error;                         // failed
};

// Receives a run's events in order, on the training thread. A sink that throws stops
// the run with that error.
class EventSink {
 public:
  virtual ~EventSink() = default;
  virtual void on_event(const TrainEvent& event) = 0;
};

}  // namespace ft::train
