// Training checkpoints: a folder per saved step holding everything a run needs to go on
// exactly where it stopped.
//
//   <root>/step-000004/model.safetensors      trainable weights (f32 masters in mixed
//                                             precision)
//                      optimizer.safetensors  Optimizer::state() (moments, step count)
//                      trainer.json           step, data position, RNG state, early-stopping
//                                             counters, loss scaler, config hash
//                      complete               written last: the folder is whole
//   <root>/latest                             "step-000004", replaced after each save
//
// A checkpoint is written into a hidden temporary folder, every file fsynced, the folder
// renamed into place and the parent fsynced, and only then is `latest` replaced (written
// beside it and renamed). A crash at any point leaves either the previous checkpoints or
// the new one, never a folder that looks complete but is not: readers only accept
// step-* folders holding the `complete` marker (Note [Atomic checkpoints] in
// checkpoint.cpp).
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>

#include "ft/core/param_map.h"
#include "ft/data/batching.h"

namespace ft::train {

struct TrainerState {
  int64_t step = 0;                     // optimizer steps done
  data::Position position;              // the next micro-batch to read
  std::array<uint32_t, 2> rng_state{};  // Rng::state() after the last step
  std::optional<double> best_val_loss;  // lowest validation loss seen
  int64_t evals_without_improvement = 0;
  // The LossScaler's scale and good_steps; absent when the run scales no loss.
  std::optional<float> loss_scale;
  int64_t loss_scale_good_steps = 0;
  std::string config_hash;  // of the settings that shape the run (TrainerConfig)
  std::string settings;     // those settings, "key=value;..." (empty in older checkpoints)
  int ranks = 1;            // of a data-parallel run (data_parallel.h)
};

struct Checkpoint {
  ParamMap weights;    // trainable parameters
  ParamMap optimizer;  // Optimizer::state()
  TrainerState state;
};

// "<root>/step-000012".
std::filesystem::path checkpoint_folder(const std::filesystem::path& root, int64_t step);

// Files a caller adds to a checkpoint, written into its folder before it is marked
// complete: an adapter's or a model folder's files, so that the checkpoint loads as one.
using CheckpointFiles = std::function<void(const std::filesystem::path& folder)>;

// Writes a checkpoint atomically (see above) and returns its folder. An existing folder of
// the same step is replaced. Throws ft::Error naming the path when a write fails.
std::filesystem::path write_checkpoint(const std::filesystem::path& root, const Checkpoint& c,
                                       const CheckpointFiles& files = {});

// Deletes every complete checkpoint under root but the `keep` of the highest steps (keep
// >= 1), and any temporary folder a crash left. Throws ft::Error naming a folder it cannot
// delete.
void prune_checkpoints(const std::filesystem::path& root, int keep);

// The complete checkpoint folder of the highest step under root; nullopt when there is
// none. Temporary folders and folders without the `complete` marker are ignored.
std::optional<std::filesystem::path> latest_checkpoint(const std::filesystem::path& root);

// Reads a checkpoint folder; throws ft::Error naming the file for a missing marker or a
// missing or malformed file.
Checkpoint read_checkpoint(const std::filesystem::path& folder);

}  // namespace ft::train
