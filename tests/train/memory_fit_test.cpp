// Fitting a run to a memory budget before it starts: the largest batch whose estimate
// takes at most kBudgetShare of the budget, and the refusal of one that does not fit,
// naming what would.
#include <gtest/gtest.h>

#include "ft/core/random.h"
#include "ft/models/memory.h"
#include "ft/models/registry.h"
#include "ft/train/memory_fit.h"
#include "tests/test_util.h"
#include "tests/train/tiny_model.h"

namespace {

using ft::models::TrainingPlan;
using ft::train::with_batch_size;

std::unique_ptr<ft::models::CausalLM> tiny_model() {
  ft::Rng rng(0);
  ft::models::Config c = ft::testing::tiny_llama_config();
  c.model_type = "llama";
  return ft::models::build_model(c, rng);
}

uint64_t need(const ft::models::CausalLM& model, const TrainingPlan& plan, int batch) {
  return ft::models::estimate_training_memory(model, with_batch_size(plan, batch)).total();
}

// The budget whose share is exactly what a batch of `batch` rows needs.
uint64_t budget_for(const ft::models::CausalLM& model, const TrainingPlan& plan, int batch) {
  return static_cast<uint64_t>(static_cast<double>(need(model, plan, batch)) /
                               ft::train::kBudgetShare) +
         1;
}

TEST(MemoryFit, LargestFittingBatchIsTheLastWhoseEstimateFits) {
  auto model = tiny_model();
  TrainingPlan plan;
  plan.seq_length = 256;
  ASSERT_LT(need(*model, plan, 5), need(*model, plan, 6));
  for (int batch : {1, 5, 17}) {
    const uint64_t budget = budget_for(*model, plan, batch);
    EXPECT_EQ(ft::train::largest_fitting_batch(*model, plan, budget), batch);
    EXPECT_EQ(ft::train::largest_fitting_batch(*model, plan, budget - 2), batch - 1);
  }
  // Capped by max_batch, and 0 when one row does not fit.
  EXPECT_EQ(ft::train::largest_fitting_batch(*model, plan, budget_for(*model, plan, 17), 8), 8);
  EXPECT_EQ(ft::train::largest_fitting_batch(*model, plan, need(*model, plan, 1) / 2), 0);
  // Checkpointing keeps less per layer, so more rows fit the same budget.
  TrainingPlan checkpointed = plan;
  checkpointed.grad_checkpoint = true;
  EXPECT_GT(ft::train::largest_fitting_batch(*model, checkpointed, budget_for(*model, plan, 5)), 5);
}

TEST(MemoryFit, AStepThatDoesNotFitIsRefusedWithWhatWould) {
  auto model = tiny_model();
  TrainingPlan plan = with_batch_size(TrainingPlan{}, 8);
  plan.seq_length = 256;
  // Fits: no error; an unknown budget (0) passes.
  ft::train::check_memory_fits(*model, plan, budget_for(*model, plan, 8), "free on the GPU");
  ft::train::check_memory_fits(*model, plan, 0, "free on the GPU");
  ft::testing::expect_error(
      [&] {
        ft::train::check_memory_fits(*model, plan, budget_for(*model, plan, 5), "free on the GPU");
      },
      "--batch-size 5 fits");
  ft::testing::expect_error(
      [&] {
        ft::train::check_memory_fits(*model, plan, budget_for(*model, plan, 5), "free on the GPU");
      },
      "free on the GPU: ");
  ft::testing::expect_error(
      [&] {
        ft::train::check_memory_fits(*model, plan, need(*model, plan, 1) / 4, "free on the GPU");
      },
      "not even one row fits");
}

}  // namespace
