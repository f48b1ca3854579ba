// The ft command as a script sees it: output, exit codes, one-line errors.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>

#include "ft/core/device.h"
#include "ft/template/chat_template.h"
#include "ft/tokenizer/tokenizer.h"
#include "tests/test_util.h"

namespace {

using Result = ft::testing::CommandResult;

Result run(const std::string& args, const std::string& input = "", bool raw = false) {
  return ft::testing::run_ft(args, input, raw);
}

const std::string kTokenizers = ft::testing::shared_tokenizers_dir();
const std::string kData = FT_TEST_DATA "/data";

}  // namespace

TEST(Cli, VersionAndInfo) {
  auto version = run("--version");
  EXPECT_EQ(version.status, 0);
  EXPECT_EQ(version.out, std::string("ft ") + FT_VERSION + "\n");
  auto info = run("info --json");
  ASSERT_EQ(info.status, 0) << info.out;
  auto json = nlohmann::json::parse(info.out);
  EXPECT_EQ(json["mlx_version"], "0.32.4");
  EXPECT_TRUE(json["backend"] == "cpu" || json["backend"] == "cuda" || json["backend"] == "metal");
  EXPECT_GT(json["cpu"]["cores"].get<int>(), 0);
  EXPECT_GT(json["system_memory"].get<double>(), 0);
}

// Note [OpenBLAS on CPUs it does not know]: a family the user names is kept, and without
// one ft runs with kernels that use the CPU's AVX2 or AVX-512 where it has them.
TEST(Cli, InfoNamesTheOpenBlasKernelsInUse) {
  auto named = run("OPENBLAS_CORETYPE=Haswell " + std::string(FT_BINARY) + " info --json", "",
                   /*raw=*/true);
  ASSERT_EQ(named.status, 0) << named.out;
  const std::string core = nlohmann::json::parse(named.out)["cpu"]["blas_core"];
  if (core.empty()) GTEST_SKIP() << "the BLAS is not OpenBLAS";
  EXPECT_EQ(core, "Haswell");
#if defined(__x86_64__)
  auto chosen = run("env -u OPENBLAS_CORETYPE " + std::string(FT_BINARY) + " info --json", "",
                    /*raw=*/true);
  ASSERT_EQ(chosen.status, 0) << chosen.out;
  const std::string used = nlohmann::json::parse(chosen.out)["cpu"]["blas_core"];
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    EXPECT_EQ(ft::blas_core_for(used, true, true), "") << used;
  }
#endif
}

TEST(Cli, UsageErrorsExitTwoAndFailuresOne) {
  auto unknown = run("no-such-command");
  EXPECT_EQ(unknown.status, 2);
  auto missing = run("tokenize --tokenizer /nonexistent/tok --json hi");
  EXPECT_EQ(missing.status, 1);
  // One line: "ft: error: [place] fact".
  EXPECT_TRUE(std::regex_match(
      missing.out, std::regex("ft: error: \\[[a-z_]+\\] [^\n]*/nonexistent/tok[^\n]*\n")))
      << missing.out;
  // An adapter file needs an adapter.
  auto lora = run("export " + std::string(FT_TEST_DATA) +
                  "/gguf/llama_f32.gguf --format gguf-lora --out /tmp/ft_cli_lora.gguf");
  EXPECT_EQ(lora.status, 1);
  EXPECT_TRUE(
      std::regex_match(lora.out, std::regex("ft: error: \\[export\\] [^\n]*--adapter[^\n]*\n")))
      << lora.out;
}

TEST(Cli, TokenizePrintsTheLibrarysIdsAndPieces) {
  FT_REQUIRE_SHARED_TOKENIZERS();
  auto tokenizer = ft::tokenizer::Tokenizer::from_dir(kTokenizers + "/llama3");
  auto expected = tokenizer.encode_with_pieces("Hello world, 12345!", true);
  auto r = run("tokenize --tokenizer " + kTokenizers + "/llama3 --json 'Hello world, 12345!'");
  ASSERT_EQ(r.status, 0) << r.out;
  auto json = nlohmann::json::parse(r.out);
  EXPECT_EQ(json["ids"].get<std::vector<int>>(), expected.ids);
  EXPECT_EQ(json["pieces"].get<std::vector<std::string>>(), expected.pieces);
  // TEXT "-" reads stdin.
  auto from_stdin =
      run("tokenize --tokenizer " + kTokenizers + "/llama3 --json -", "Hello world, 12345!");
  EXPECT_EQ(from_stdin.out, r.out);
}

TEST(Cli, TemplatePrintsTheRenderingExactly) {
  FT_REQUIRE_SHARED_TOKENIZERS();
  std::string messages = R"([{"role": "system", "content": "Be brief."},
                             {"role": "user", "content": "Grüße?"}])";
  std::string path = ::testing::TempDir() + "/ft_cli_messages.json";
  std::ofstream(path) << messages;
  auto chat = ft::chat::ChatTemplate::from_tokenizer_dir(kTokenizers + "/qwen3");
  ft::chat::RenderOptions options;
  options.add_generation_prompt = true;
  std::string expected = chat.render(nlohmann::ordered_json::parse(messages), options);
  auto r = run("template --tokenizer " + kTokenizers + "/qwen3 --messages " + path +
               " --add-generation-prompt");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_EQ(r.out, expected);
  EXPECT_EQ(r.out.substr(r.out.size() - 22), "<|im_start|>assistant\n");
}

TEST(Cli, DataReportsCountsAsJsonAndCachesByDefault) {
  FT_REQUIRE_SHARED_TOKENIZERS();
  std::string cache = ::testing::TempDir() + "/ft_cli_cache";
  std::filesystem::remove_all(cache);
  std::string args = "data --tokenizer " + kTokenizers + "/qwen3 --data " + kData +
                     "/chat.jsonl --mask-prompt --json";
  auto r = run("FT_CACHE_DIR=" + cache + " " + FT_BINARY + " " + args, "", /*raw=*/true);
  ASSERT_EQ(r.status, 0) << r.out;
  auto json = nlohmann::json::parse(r.out);
  const auto& split = json["splits"][0];
  EXPECT_FALSE(split["from_cache"].get<bool>());
  auto again = run("FT_CACHE_DIR=" + cache + " " + FT_BINARY + " " + args, "", /*raw=*/true);
  auto cached = nlohmann::json::parse(again.out)["splits"][0];
  EXPECT_TRUE(cached["from_cache"].get<bool>());
  EXPECT_EQ(cached["tokens"], split["tokens"]);
  EXPECT_EQ(cached["trained_tokens"], split["trained_tokens"]);
  EXPECT_EQ(split["format"], "chat");
  EXPECT_EQ(split["records"], 3);
  EXPECT_GT(split["tokens"].get<int>(), split["trained_tokens"].get<int>());
  EXPECT_GT(split["trained_tokens"].get<int>(), 0);
  auto bad = run("data --tokenizer " + kTokenizers + "/qwen3 --data " + kData + "/bad.jsonl");
  EXPECT_EQ(bad.status, 1);
  EXPECT_NE(bad.out.find("bad.jsonl:"), std::string::npos) << bad.out;
}

TEST(Cli, DemoLossFalls) {
  auto r = run("demo --steps 30 --warmup 5 --log-every 10 --batch 8 --length 32");
  ASSERT_EQ(r.status, 0) << r.out;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(r.out, m, std::regex("loss ([0-9.]+) -> ([0-9.]+)"))) << r.out;
  float first = std::stof(m[1]), last = std::stof(m[2]);
  EXPECT_NEAR(first, std::log(256.0f), 0.5f);  // a fresh model guesses uniformly over bytes
  EXPECT_LT(last, 0.7f * first);
  auto bad = run("demo --data /nonexistent/text.txt");
  EXPECT_EQ(bad.status, 1);
  EXPECT_EQ(bad.out, "ft: error: [demo] /nonexistent/text.txt: cannot open\n");
}
