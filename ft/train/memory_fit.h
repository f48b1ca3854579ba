// Whether a training run fits the device's memory, before it starts: the memory estimate
// (models/memory.h) against a budget (ft::memory_budget: the GPU's free memory, or the
// system's available memory), and the largest batch size that fits (`--batch-size auto`).
#pragma once

#include <cstdint>
#include <string>

#include "ft/models/causal_lm.h"
#include "ft/models/memory.h"

namespace ft::train {

// The share of a budget an estimate may take; the rest is for what the estimate leaves
// out (the allocator's cache and fragmentation, the backend's workspaces, the estimate's
// own error).
constexpr double kBudgetShare = 0.9;

// The plan of a step as ft train and ft bench run it (ft info estimates the same):
// batch_size rows of seq_length tokens split into the step's row shards, on the default
// device's backend under MLX's current memory limit.
models::TrainingPlan training_plan(int batch_size, int seq_length, bool grad_checkpoint,
                                   const std::string& optimizer);
// plan with batch_size rows, split into the row shards the step would use for them.
models::TrainingPlan with_batch_size(models::TrainingPlan plan, int batch_size);

// The largest batch size in [1, max_batch] whose estimate fits kBudgetShare of budget;
// 0 when one row does not.
int largest_fitting_batch(const models::CausalLM& model, const models::TrainingPlan& plan,
                          uint64_t budget, int max_batch = 1024);

// Throws ft::Error(place, ...) when plan's estimate does not fit kBudgetShare of budget,
// saying what the step needs, the budget ("of the 38.0 GiB " + where, e.g. "free on the
// GPU"), and what to change: the largest batch that fits, --grad-checkpoint,
// --batch-size auto (for ft train), or when not one row fits shorter sequences or a
// quantized base. A
// budget of 0 (unknown) passes.
void check_memory_fits(const models::CausalLM& model, const models::TrainingPlan& plan,
                       uint64_t budget, const std::string& where,
                       const std::string& place = "train");

}  // namespace ft::train
