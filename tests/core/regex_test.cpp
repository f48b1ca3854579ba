// ft::Regex: PCRE2 matching with limits, in place of std::regex for user patterns.
#include "ft/core/regex.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "ft/core/error.h"

namespace ft {
namespace {

TEST(Regex, SearchFindsAMatchAnywhereAndFullMatchNeedsTheWholeText) {
  const Regex re(R"(self_attn\.(q|v)_proj)", "test");
  EXPECT_TRUE(re.search("model.layers.3.self_attn.q_proj"));
  EXPECT_FALSE(re.search("model.layers.3.self_attn.k_proj"));
  EXPECT_TRUE(re.full_match("self_attn.v_proj"));
  EXPECT_FALSE(re.full_match("x.self_attn.v_proj"));
  EXPECT_FALSE(re.full_match("self_attn.v_proj.lora_A"));
}

TEST(Regex, FullMatchGivesEachGroup) {
  const Regex re(R"(model\.layers\.(\d+)\.(.+)|(unused))", "test");
  std::vector<std::string_view> groups;
  ASSERT_TRUE(re.full_match("model.layers.12.mlp.down_proj", &groups));
  ASSERT_EQ(groups.size(), 4u);
  EXPECT_EQ(groups[0], "model.layers.12.mlp.down_proj");
  EXPECT_EQ(groups[1], "12");
  EXPECT_EQ(groups[2], "mlp.down_proj");
  EXPECT_EQ(groups[3], "");
  EXPECT_FALSE(re.full_match("model.layers.x.mlp", &groups));
}

TEST(Regex, ABadPatternIsAnErrorNamingThePlaceAndThePattern) {
  try {
    Regex("mlp(", "recipe");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.place(), "recipe");
    EXPECT_NE(e.fact().find("'mlp('"), std::string::npos) << e.what();
    EXPECT_NE(e.fact().find("does not compile at offset 4"), std::string::npos) << e.what();
  }
}

TEST(Regex, RunawayBacktrackingIsAnErrorNotAHang) {
  // (a|aa)*[^a] tries every split of the a's into ones and twos: fib(60) ways, far past
  // PCRE2's limit of 10 million steps.
  const Regex re("^(a|aa)*[^a]", "lora");
  try {
    re.search(std::string(60, 'a'));
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.place(), "lora");
    EXPECT_NE(e.fact().find("limit"), std::string::npos) << e.what();
  }
}

TEST(Regex, LongTextsDoNotExhaustTheStack) {
  // std::regex recursed once per character here.
  const std::string text(1 << 20, 'x');
  EXPECT_TRUE(Regex("^(x|y)*$", "test").search(text));
  EXPECT_TRUE(Regex(".*x", "test").full_match(text));
}

TEST(Regex, EscapedTextMatchesItselfOnly) {
  const std::string text = R"(a.b*c+d?e(f)[g]{h}|i^j$k\l)";
  const Regex re(regex_escape(text), "test");
  EXPECT_TRUE(re.full_match(text));
  EXPECT_FALSE(re.full_match("a-b*c+d?e(f)[g]{h}|i^j$k\\l"));
}

TEST(Regex, FindAllListsNonOverlappingMatchesOfUnicodeText) {
  const Regex re(R"(\p{L}+)", "tokenizer", Regex::Text::kUnicode);
  std::vector<std::pair<size_t, size_t>> out;
  re.find_all("héllo, wörld 42", out);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0], (std::pair<size_t, size_t>{0, 6}));
  EXPECT_EQ(out[1], (std::pair<size_t, size_t>{8, 14}));
}

}  // namespace
}  // namespace ft
