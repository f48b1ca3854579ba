// The sinks every run can have: metrics.jsonl and the console. TensorBoard's is in
// tensorboard.h.
#pragma once

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>

#include "ft/train/events.h"

namespace ft::train {

// metrics.jsonl: one JSON object per step ({"step", "loss", "learning_rate", "grad_norm",
// "tokens", "tokens_per_second", "loss_scale", "skipped", "peak_memory"}) and per
// evaluation ({"step", "val_loss", "val_ppl", "val_accuracy", "val_tokens"}). A run that
// starts at step 0 empties the file; a resumed one keeps the records up to its step (later
// ones are run again).
class MetricsFileSink : public EventSink {
 public:
  explicit MetricsFileSink(std::filesystem::path file) : file_(std::move(file)) {}
  void on_event(const TrainEvent& event) override;

 private:
  void append(const std::string& line);
  std::filesystem::path file_;
};

// Every event as one JSON object a line, appended (a resumed run adds to the file):
// {"event": "started"|"step"|"evaluation"|"checkpoint"|"best"|"finished"|"failed",
// "step", "total_steps", ...} with, by kind, "config"; "loss", "learning_rate",
// "grad_norm", "tokens_per_second", "elapsed_seconds", "eta_seconds" (null when unknown),
// "peak_memory_gib", "epoch"; "loss", "perplexity", "accuracy" (evaluation, best); "folder";
// "reason"; "error". Each line is flushed as it is written, for readers that follow it
// (ft serve).
class EventsFileSink : public EventSink {
 public:
  explicit EventsFileSink(std::filesystem::path file) : file_(std::move(file)) {}
  void on_event(const TrainEvent& event) override;

 private:
  std::filesystem::path file_;
};

// An event as EventsFileSink writes it.
nlohmann::json event_json(const TrainEvent& event);

// The console. Style::bar: one line that redraws itself on stderr (a terminal): a bar,
// step/total, loss, learning rate, tokens/s, elapsed, ETA and peak memory, with
// evaluations, checkpoints and the end printed above it. Style::lines: plain lines on
// stdout, a step line about every twentieth of the run, one per evaluation, checkpoint
// and the end.
class ConsoleSink : public EventSink {
 public:
  enum class Style { bar, lines };
  explicit ConsoleSink(Style style);
  // bar when stderr is a terminal, else lines.
  static Style style_for_this_terminal();
  void on_event(const TrainEvent& event) override;

 private:
  void print_above(const std::string& line);
  Style style_;
  std::string bar_;  // the bar as last drawn; empty when none is on screen
};

// "1:05:09", "12:07": hours only when needed.
std::string format_duration(double seconds);

}  // namespace ft::train
