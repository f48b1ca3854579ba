// ft quantize and ft convert as a script sees them: what they print, and one error line
// with exit status 1 for every bad input.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>
#include <vector>

#include "ft/io/model_folder.h"
#include "ft/models/registry.h"
#include "tests/test_util.h"

namespace {

namespace fs = std::filesystem;
using Result = ft::testing::CommandResult;

const fs::path kGolden = FT_TEST_DATA;
const std::string kLlama = (kGolden / "models" / "llama").string();

fs::path temp(const std::string& name) {
  fs::path p = fs::path(::testing::TempDir()) /
               ("ft_cli_convert_" + std::to_string(::getpid()) + "_" + name);
  fs::remove_all(p);
  return p;
}

fs::path write_file(const std::string& name, const std::string& text) {
  fs::path p = temp(name);
  std::ofstream(p) << text;
  return p;
}

bool one_error_line(const std::string& out) {
  return std::regex_match(out, std::regex("ft: error: [^\n]*\n"));
}

}  // namespace

TEST(CliConvert, QuantizeWithARecipeThenConvertBack) {
  const fs::path out = temp("quantized");
  const std::string recipe = (kGolden / "quantized" / "llama_recipe.yaml").string();
  Result q =
      ft::testing::run_ft("quantize " + kLlama + " --recipe " + recipe + " --out " + out.string());
  ASSERT_EQ(q.status, 0) << q.out;
  // The recipe's defaults (4 bits, groups of 32) stand when --bits and --group-size are not given.
  EXPECT_EQ(q.out,
            "quantized 13 layers (default 4 bits, groups of 32); wrote " + out.string() + "\n");
  auto config = ft::io::quantization_config(ft::io::read_config(out));
  ASSERT_TRUE(config);
  EXPECT_EQ(config->defaults.bits, 4);
  EXPECT_EQ(config->for_module("model.layers.0.self_attn.q_proj")->bits, 8);

  // --bits wins over the recipe's: layers no rule decides get 8 bits.
  const fs::path eight = temp("quantized8");
  Result q8 = ft::testing::run_ft("quantize " + kLlama + " --recipe " + recipe +
                                  " --bits 8 --out " + eight.string());
  ASSERT_EQ(q8.status, 0) << q8.out;
  config = ft::io::quantization_config(ft::io::read_config(eight));
  EXPECT_EQ(config->defaults.bits, 8);
  EXPECT_EQ(config->defaults.group_size, 32);
  EXPECT_EQ(config->for_module("model.layers.1.self_attn.q_proj")->bits, 8);
  EXPECT_EQ(config->for_module("model.layers.1.mlp.up_proj")->bits, 2);

  // --dtype: the scales take it, and config.json names it.
  const fs::path half = temp("quantized_bf16");
  Result qb = ft::testing::run_ft("quantize " + kLlama +
                                  " --group-size 32 --dtype bfloat16 --out " + half.string());
  ASSERT_EQ(qb.status, 0) << qb.out;
  EXPECT_EQ(ft::io::load_weights(half).at("model.layers.0.mlp.up_proj.scales").dtype(),
            mlx::core::bfloat16);
  EXPECT_EQ(ft::io::read_config(half).get_string("dtype"), "bfloat16");

  const fs::path back = temp("float");
  Result c = ft::testing::run_ft("convert " + out.string() + " --out " + back.string());
  ASSERT_EQ(c.status, 0) << c.out;
  EXPECT_EQ(c.out, "converted quantized to floating point; wrote " + back.string() + "\n");
  EXPECT_FALSE(ft::io::quantization_config(ft::io::read_config(back)));
  auto model = ft::models::load_model(back);
  EXPECT_EQ(model->find_module("model.embed_tokens")->type_name(), "Embedding");
}

TEST(CliConvert, BadInputsAreOneErrorLine) {
  const fs::path busy = temp("busy");
  fs::create_directories(busy);
  std::ofstream(busy / "notes.txt") << "keep";
  const fs::path out = temp("out");
  const fs::path bad_rule = write_file("bad_rule.yaml", "rules:\n  - module=q_proj bits=9\n");
  const fs::path no_module = write_file("no_module.yaml", "rules:\n  - bits=8\n");
  const fs::path typo = write_file("typo.yaml", "rules:\n  - module=self_atn bits=8\n");
  const fs::path broken = temp("broken_bin");
  fs::create_directories(broken);
  fs::copy_file(kGolden / "io" / "truncated_pickle.bin", broken / "pytorch_model.bin");
  struct Case {
    std::string args;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"quantize " + kLlama + " --bits 7 --out " + out.string(),
       "[quantize] bits must be 2, 3, 4, 5, 6 or 8, got 7"},
      {"quantize " + kLlama + " --group-size 48 --out " + out.string(),
       "[quantize] group_size must be 32, 64 or 128, got 48"},
      {"quantize " + kLlama + " --recipe " + bad_rule.string() + " --out " + out.string(),
       "[recipe] " + bad_rule.string() + ": rule 1 'module=q_proj bits=9': bits must be"},
      {"quantize " + kLlama + " --recipe " + no_module.string() + " --out " + out.string(),
       "rule 1 'bits=8': names no module"},
      {"quantize " + kLlama + " --recipe " + typo.string() + " --out " + out.string(),
       "rule 1 'module=self_atn bits=8' matches no Linear, Embedding or expert weight"},
      {"quantize " + kLlama + " --recipe /nonexistent/r.yaml --out " + out.string(),
       "[recipe] /nonexistent/r.yaml: no such file"},
      {"quantize " + kLlama + " --out " + busy.string(),
       "[quantize] " + busy.string() + ": exists and is not empty; pass --overwrite to replace it"},
      {"quantize /nonexistent/model --out " + out.string(),
       "[quantize] /nonexistent/model: no such file or folder"},
      {"convert " + kLlama + " --out " + out.string(), "nothing to convert"},
      {"convert " + broken.string() + " --out " + out.string(),
       (broken / "pytorch_model.bin").string()},
      {"convert " + (kGolden / "quantized" / "llama_q4_g32").string() + " --out " + busy.string(),
       "[convert] " + busy.string() + ": exists and is not empty; pass --overwrite"},
  };
  for (const auto& c : cases) {
    Result r = ft::testing::run_ft(c.args);
    EXPECT_EQ(r.status, 1) << c.args << "\n" << r.out;
    EXPECT_TRUE(one_error_line(r.out)) << r.out;
    EXPECT_NE(r.out.find(c.message), std::string::npos) << c.args << "\n" << r.out;
  }
  // A dtype is checked as the command line is read: a usage error.
  Result dtype =
      ft::testing::run_ft("quantize " + kLlama + " --dtype float8 --out " + out.string());
  EXPECT_EQ(dtype.status, 2);
  EXPECT_EQ(dtype.out, "ft: error: --dtype: float8 not in {float32,bfloat16,float16}\n");
  // Nothing was written, and the folder in use kept its file.
  EXPECT_FALSE(fs::exists(out));
  EXPECT_TRUE(fs::exists(busy / "notes.txt"));
  Result overwrite = ft::testing::run_ft("quantize " + kLlama +
                                         " --group-size 32 --overwrite --out " + busy.string());
  EXPECT_EQ(overwrite.status, 0) << overwrite.out;
  EXPECT_FALSE(fs::exists(busy / "notes.txt"));
}
