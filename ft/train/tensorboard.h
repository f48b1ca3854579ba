// TensorBoard event files written by ft (`ft train --tensorboard DIR`): scalars that the
// `tensorboard` package's reader and TensorBoard itself show, with no TensorFlow or
// protobuf library (Note [TensorBoard event files] in tensorboard.cpp).
#pragma once

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

#include "ft/train/events.h"

namespace ft::train {

// One event file, events.out.tfevents.<seconds>.<host>.<pid>.ft in dir (created when
// missing). Every write is flushed, so a reader sees the scalars as they come.
class TensorBoardWriter {
 public:
  explicit TensorBoardWriter(const std::filesystem::path& dir);
  void scalar(std::string_view tag, float value, int64_t step, double wall_time);
  const std::filesystem::path& file() const { return file_; }

 private:
  void record(const std::string& event);
  std::filesystem::path file_;
  std::ofstream out_;
};

// train/loss, train/learning_rate, train/grad_norm, train/tokens_per_second,
// train/peak_memory_gib per step; val/loss, val/perplexity, val/accuracy per evaluation.
class TensorBoardSink : public EventSink {
 public:
  explicit TensorBoardSink(const std::filesystem::path& dir) : writer_(dir) {}
  void on_event(const TrainEvent& event) override;

 private:
  TensorBoardWriter writer_;
};

// CRC-32C (Castagnoli) of bytes, as TFRecord frames use it before masking.
uint32_t crc32c(std::string_view bytes);

}  // namespace ft::train
