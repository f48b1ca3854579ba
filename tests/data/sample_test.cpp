// Masked samples against independent references: the tokenizer's own encoding of the
// rendered template, and the trained spans written out by hand from each template.
#include <gtest/gtest.h>

#include <fstream>
#include <map>

#include "ft/core/error.h"
#include "ft/data/tokenize_sample.h"
#include "tests/test_util.h"

namespace {

using Json = nlohmann::ordered_json;
namespace fs = std::filesystem;

struct Loaded {
  ft::tokenizer::Tokenizer tok;
  ft::chat::ChatTemplate chat;
};

const Loaded& load(const std::string& name) {
  static std::map<std::string, std::unique_ptr<Loaded>> cache;
  auto& slot = cache[name];
  if (!slot) {
    fs::path dir = ft::testing::shared_tokenizer(name);
    slot.reset(new Loaded{ft::tokenizer::Tokenizer::from_dir(dir),
                          ft::chat::ChatTemplate::from_tokenizer_dir(dir)});
  }
  return *slot;
}

Json fixture_line(const std::string& file, int line) {
  std::ifstream in(fs::path(FT_TEST_DATA) / "data" / file);
  std::string text;
  for (int i = 0; i < line; ++i) std::getline(in, text);
  return Json::parse(text);
}

std::vector<int32_t> i32(const std::vector<int>& v) {
  return {v.begin(), v.end()};
}

// The decoded text of each maximal run of trained tokens.
std::vector<std::string> trained_runs(const ft::data::Sample& s,
                                      const ft::tokenizer::Tokenizer& tok) {
  std::vector<std::string> runs;
  std::vector<int> run;
  for (size_t i = 0; i <= s.ids.size(); ++i) {
    if (i < s.ids.size() && s.mask[i]) {
      run.push_back(s.ids[i]);
    } else if (!run.empty()) {
      runs.push_back(tok.decode(run));
      run.clear();
    }
  }
  return runs;
}

ft::data::Sample tokenize(const Loaded& l, const Json& line, bool mask_prompt, int max_len = 0) {
  ft::data::SampleOptions o;
  o.mask_prompt = mask_prompt;
  o.max_seq_length = max_len;
  ft::data::SampleTokenizer st(l.tok, &l.chat, o);
  auto format = ft::data::detect_format(line, "t:1");
  return st.tokenize(ft::data::to_record(line, format, "t:1"), "t:1");
}

}  // namespace

TEST(Sample, ChatUnmaskedIsTheEncodedTemplate) {
  FT_REQUIRE_SHARED_TOKENIZERS();
  const auto& l = load("qwen3");
  Json line = fixture_line("chat.jsonl", 1);
  auto s = tokenize(l, line, false);
  EXPECT_EQ(s.ids, i32(l.tok.encode(l.chat.render(line["messages"]), false)));
  EXPECT_EQ(ft::data::trained_tokens(s), int64_t(s.ids.size()) - 1);
}

TEST(Sample, Qwen3AssistantTurnsOnly) {
  FT_REQUIRE_SHARED_TOKENIZERS();
  const auto& l = load("qwen3");
  Json line = fixture_line("chat.jsonl", 1);
  auto s = tokenize(l, line, true);
  EXPECT_EQ(s.ids, i32(l.tok.encode(l.chat.render(line["messages"]), false)));
  // Qwen3 renders the final turn after the last question with an empty think block.
  EXPECT_EQ(
      trained_runs(s, l.tok),
      (std::vector<std::string>{"Paris.<|im_end|>", "<think>\n\n</think>\n\nTokyo.<|im_end|>"}));
  // The trained tokens are exactly the tokenization of those texts.
  std::vector<int> expect = l.tok.encode("Paris.<|im_end|>", false);
  auto tail = l.tok.encode("<think>\n\n</think>\n\nTokyo.<|im_end|>", false);
  expect.insert(expect.end(), tail.begin(), tail.end());
  std::vector<int> trained;
  for (size_t i = 0; i < s.ids.size(); ++i)
    if (s.mask[i]) trained.push_back(s.ids[i]);
  EXPECT_EQ(trained, expect);
}

TEST(Sample, Llama3AndGemma3AssistantTurnsOnly) {
  FT_REQUIRE_SHARED_TOKENIZERS();
  Json line = fixture_line("chat.jsonl", 1);
  const auto& llama = load("llama3");
  auto s = tokenize(llama, line, true);
  EXPECT_EQ(s.ids, i32(llama.tok.encode(llama.chat.render(line["messages"]), false)));
  // Llama 3's template always appends the next assistant header: it is not trained.
  EXPECT_EQ(trained_runs(s, llama.tok),
            (std::vector<std::string>{"Paris.<|eot_id|>", "Tokyo.<|eot_id|>"}));
  const auto& gemma = load("gemma3");
  auto g = tokenize(gemma, line, true);
  EXPECT_EQ(g.ids, i32(gemma.tok.encode(gemma.chat.render(line["messages"]), false)));
  EXPECT_EQ(trained_runs(g, gemma.tok),
            (std::vector<std::string>{"Paris.<end_of_turn>", "Tokyo.<end_of_turn>"}));
}

TEST(Sample, ToolCallsAndToolsAreRendered) {
  FT_REQUIRE_SHARED_TOKENIZERS();
  const auto& l = load("qwen3");
  Json line = fixture_line("chat.jsonl", 4);
  auto s = tokenize(l, line, true);
  ft::chat::RenderOptions ro;
  ro.tools = line["tools"];
  std::string full = l.chat.render(line["messages"], ro);
  ASSERT_NE(full.find("get_weather"), std::string::npos);
  EXPECT_EQ(s.ids, i32(l.tok.encode(full, false)));
  auto runs = trained_runs(s, l.tok);
  ASSERT_EQ(runs.size(), 2u);
  EXPECT_EQ(runs[0].rfind("Let me check.\n<tool_call>\n", 0), 0u) << runs[0];
  EXPECT_TRUE(runs[0].ends_with("</tool_call><|im_end|>")) << runs[0];
  EXPECT_NE(full.find(runs[0]), std::string::npos);
  EXPECT_EQ(runs[1], "<think>\n\n</think>\n\nIt is -3 degrees in Oslo.<|im_end|>");
}

TEST(Sample, PlainConcatenationWithoutTemplate) {
  FT_REQUIRE_SHARED_TOKENIZERS();
  const auto& l = load("llama3");
  Json line = fixture_line("completions.jsonl", 2);
  ft::data::SampleOptions o;
  o.mask_prompt = true;
  o.use_template = false;
  ft::data::SampleTokenizer st(l.tok, &l.chat, o);
  auto s = st.tokenize(ft::data::to_record(line, ft::data::Format::kCompletions, "t:2"), "t:2");
  std::vector<int> prompt = l.tok.encode("Translate to French: dog", true);
  std::vector<int> completion = l.tok.encode("chien", false);
  std::vector<int> expect = prompt;
  expect.insert(expect.end(), completion.begin(), completion.end());
  expect.push_back(l.tok.eos_token()->id);
  EXPECT_EQ(s.ids, i32(expect));
  std::vector<uint8_t> mask(prompt.size(), 0);
  mask.resize(expect.size(), 1);
  EXPECT_EQ(s.mask, mask);
}

TEST(Sample, TruncationIsCountedAndAnEmptyTargetIsAnError) {
  FT_REQUIRE_SHARED_TOKENIZERS();
  const auto& l = load("qwen3");
  Json text = Json::parse(R"({"text": "one two three four five six seven eight nine ten"})");
  auto s = tokenize(l, text, false, 5);
  EXPECT_TRUE(s.truncated);
  EXPECT_EQ(s.ids.size(), 5u);
  auto whole = i32(l.tok.encode(text["text"].get<std::string>(), true));
  ASSERT_GT(whole.size(), 5u);
  EXPECT_EQ(s.ids, std::vector<int32_t>(whole.begin(), whole.begin() + 5));
  // The prompt alone is longer than 8 tokens, so masking leaves nothing to train.
  try {
    tokenize(l, fixture_line("chat.jsonl", 1), true, 8);
    FAIL();
  } catch (const ft::Error& e) {
    EXPECT_EQ(e.fact(), "t:1: no trainable token left after truncation to 8 tokens");
  }
}

TEST(Sample, TemplateRejectingRolesNamesTheRecord) {
  FT_REQUIRE_SHARED_TOKENIZERS();
  const auto& l = load("gemma3");
  try {
    tokenize(l, fixture_line("bad_roles.jsonl", 1), false);
    FAIL();
  } catch (const ft::Error& e) {
    EXPECT_NE(e.fact().find("t:1"), std::string::npos) << e.what();
    EXPECT_NE(e.fact().find("Conversation roles must alternate"), std::string::npos) << e.what();
  }
}

TEST(Sample, BoundaryInsideAWordFallsBackToSeparatePieces) {
  FT_REQUIRE_SHARED_TOKENIZERS();
  const auto& l = load("qwen3");
  // A template that joins turns with nothing between them, so the assistant span starts
  // inside the word "hello".
  auto chat =
      ft::chat::ChatTemplate::from_string("{% for m in messages %}{{ m.content }}{% endfor %}");
  auto whole = l.tok.encode("hello world", false);
  auto hel = l.tok.encode("hel", false);
  ASSERT_FALSE(std::equal(hel.begin(), hel.end(), whole.begin()));  // not a token prefix
  ft::data::SampleOptions o;
  o.mask_prompt = true;
  ft::data::SampleTokenizer st(l.tok, &chat, o);
  Json line = Json::parse(R"({"prompt": "hel", "completion": "lo world"})");
  auto s = st.tokenize(ft::data::to_record(line, ft::data::Format::kCompletions, "t:1"), "t:1");
  auto rest = l.tok.encode("lo world", false);
  std::vector<int> expect = hel;
  expect.insert(expect.end(), rest.begin(), rest.end());
  EXPECT_EQ(s.ids, i32(expect));
  std::vector<uint8_t> mask(hel.size(), 0);
  mask.resize(expect.size(), 1);
  EXPECT_EQ(s.mask, mask);
}
