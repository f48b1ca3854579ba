#include "ft/train/memory_fit.h"

#include <vector>

#include <mlx/device.h>  // defines: default_device
#include <mlx/memory.h>  // defines: get_memory_limit

#include "ft/core/device.h"  // defines: format_bytes, backend_name
#include "ft/core/error.h"
#include "ft/train/row_shards.h"

namespace ft::train {

namespace {

bool fits(const models::CausalLM& model, const models::TrainingPlan& plan, uint64_t budget) {
  const uint64_t need = models::estimate_training_memory(model, plan).total();
  return static_cast<double>(need) <= kBudgetShare * static_cast<double>(budget);
}

}  // namespace

models::TrainingPlan training_plan(int batch_size, int seq_length, bool grad_checkpoint,
                                   const std::string& optimizer) {
  models::TrainingPlan plan;
  plan.seq_length = seq_length;
  plan.grad_checkpoint = grad_checkpoint;
  plan.optimizer = optimizer;
  plan.backend = mx::default_device() == mx::Device::gpu ? backend_name() : "cpu";
  if (plan.backend != "cpu") plan.memory_limit = mx::get_memory_limit();
  return with_batch_size(plan, batch_size);
}

models::TrainingPlan with_batch_size(models::TrainingPlan plan, int batch_size) {
  plan.batch_size = batch_size;
  plan.row_shards = row_shards(batch_size);
  return plan;
}

int largest_fitting_batch(const models::CausalLM& model, const models::TrainingPlan& plan,
                          uint64_t budget, int max_batch) {
  FT_CHECK(max_batch >= 1, "train", "the largest batch size to try must be positive, got ",
           max_batch);
  if (!fits(model, with_batch_size(plan, 1), budget)) return 0;
  // The estimate grows with the batch: the largest fitting one by bisection.
  int lo = 1, hi = max_batch;
  while (lo < hi) {
    int mid = lo + (hi - lo + 1) / 2;
    if (fits(model, with_batch_size(plan, mid), budget))
      lo = mid;
    else
      hi = mid - 1;
  }
  return lo;
}

void check_memory_fits(const models::CausalLM& model, const models::TrainingPlan& plan,
                       uint64_t budget, const std::string& where, const std::string& place) {
  if (budget == 0 || fits(model, plan, budget)) return;
  const models::MemoryEstimate m = models::estimate_training_memory(model, plan);
  std::vector<std::string> ways;
  const int largest = largest_fitting_batch(model, plan, budget, plan.batch_size);
  if (largest > 0) ways.push_back("--batch-size " + std::to_string(largest) + " fits");
  if (!plan.grad_checkpoint) {
    models::TrainingPlan checkpointed = plan;
    checkpointed.grad_checkpoint = true;
    const int with = largest_fitting_batch(model, checkpointed, budget, plan.batch_size);
    if (with == plan.batch_size)
      ways.push_back("--grad-checkpoint keeps this batch");
    else if (with > 0)
      ways.push_back("--grad-checkpoint with --batch-size " + std::to_string(with) + " fits");
  }
  std::string advice;
  if (ways.empty()) {
    advice = "not even one row fits; use shorter sequences, a quantized base or more memory";
  } else {
    for (size_t i = 0; i < ways.size(); ++i) advice += (i ? ", or " : "") + ways[i];
    if (place == "train") advice += "; --batch-size auto picks the largest";
  }
  throw Error(place, "a step of batch " + std::to_string(plan.batch_size) + " x " +
                         std::to_string(plan.seq_length) + " tokens needs about " +
                         format_bytes(m.total()) + " (activations " + format_bytes(m.activations) +
                         ", weights " + format_bytes(m.weights) + "), more than " +
                         std::to_string(static_cast<int>(kBudgetShare * 100)) + "% of the " +
                         format_bytes(budget) + " " + where + ": " + advice);
}

}  // namespace ft::train
