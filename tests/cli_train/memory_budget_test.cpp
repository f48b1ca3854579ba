// ft train against a memory budget: --batch-size auto picks the largest batch whose
// estimate fits (printing it, and training with it), a batch that does not fit is refused
// before anything is trained or saved, with what would fit.
#include <regex>

#include "tests/cli_train/cli_train_util.h"

namespace {

using namespace ft::testing::cli_train;

TEST(MemoryBudget, BatchSizeAutoPicksWhatFitsAndATooLargeBatchIsRefused) {
  fs::path data = small_data(32);
  // About 5 MiB: the tiny model's weights and a few rows of activations.
  const std::string budget = " --memory-budget 0.005";
  fs::path out = temp("budget_auto");
  Result r = run("train " + tiny_model().string() + " " + data.string() +
                 " --iterations 2 --batch-size auto" + budget + " --output-dir " + out.string());
  ASSERT_EQ(r.status, 0) << r.out;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(r.out, m, std::regex(R"(batch size auto: (\d+))"))) << r.out;
  const int picked = std::stoi(m[1]);
  EXPECT_GT(picked, 1);
  EXPECT_LT(picked, 32);  // the budget, not the data, decided
  EXPECT_TRUE(fs::exists(out / "adapter" / "adapter_model.safetensors"));

  // One row more than auto picked does not fit: refused, nothing trained or saved.
  fs::path refused = temp("budget_refused");
  r = run("train " + tiny_model().string() + " " + data.string() + " --iterations 2 --batch-size " +
          std::to_string(picked + 1) + budget + " --output-dir " + refused.string());
  EXPECT_EQ(r.status, 1) << r.out;
  // After the data and model lines, one error line says what would fit.
  const size_t error = r.out.find("ft: error: [train] a step of batch ");
  ASSERT_NE(error, std::string::npos) << r.out;
  EXPECT_TRUE(one_error_line(r.out.substr(error))) << r.out;
  EXPECT_NE(r.out.find("--batch-size " + std::to_string(picked) + " fits"), std::string::npos)
      << r.out;
  EXPECT_FALSE(fs::exists(refused));
  // The batch auto picked trains within the same budget.
  r = run("train " + tiny_model().string() + " " + data.string() + " --iterations 1 --batch-size " +
          std::to_string(picked) + budget + " --output-dir " + temp("budget_picked").string());
  EXPECT_EQ(r.status, 0) << r.out;

  for (const char* bad : {"0", "-2", "many"}) {
    r = run("train " + tiny_model().string() + " " + data.string() + " --batch-size " + bad +
            " --output-dir " + temp("budget_bad").string());
    EXPECT_EQ(r.status, 2) << bad;  // a usage error
    EXPECT_TRUE(one_error_line(r.out)) << r.out;
    EXPECT_NE(r.out.find("positive integer or auto"), std::string::npos) << r.out;
  }
}

}  // namespace
