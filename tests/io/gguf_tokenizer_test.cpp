// The tokenizer of a GGUF file against transformers' GGUF conversion: SmolLM2-135M-Instruct's
// metadata (tests/golden/make_gguf_tokenizer_fixtures.py), byte-level BPE with control
// tokens, no BOS, a chat template.
#include <gtest/gtest.h>

#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ft/core/error.h"
#include "ft/io/gguf_file.h"
#include "ft/io/gguf_tokenizer.h"

namespace {

const std::string kDir = std::string(FT_TEST_DATA) + "/gguf/";

nlohmann::json read_json(const std::string& name) {
  std::ifstream in(kDir + name);
  return nlohmann::json::parse(in);
}

nlohmann::json expected() {
  return read_json("smollm2_tokenizer.json");
}

// Each case's ids (with and without special tokens) and decoding, as transformers gave them.
void expect_cases(const ft::tokenizer::Tokenizer& tok, const nlohmann::json& cases) {
  for (const auto& c : cases) {
    const std::string text = c["text"].get<std::string>();
    SCOPED_TRACE(text);
    const auto ids = tok.encode(text);
    EXPECT_EQ(ids, c["ids"].get<std::vector<int>>());
    EXPECT_EQ(tok.encode(text, false), c["ids_no_special"].get<std::vector<int>>());
    EXPECT_EQ(tok.decode(ids), c["decoded"].get<std::string>());
  }
}

}  // namespace

TEST(GgufTokenizer, ByteLevelBpeGivesTransformersIds) {
  const auto gguf = ft::io::read_gguf_file(kDir + "smollm2_tokenizer.gguf");
  const auto tok = ft::io::gguf_tokenizer(gguf);
  const auto want = expected();
  EXPECT_EQ(tok.vocab_size(), want["vocab_size"].get<int>());
  ASSERT_TRUE(tok.bos_token() && tok.eos_token() && tok.pad_token() && tok.unk_token());
  EXPECT_EQ(tok.bos_token()->content, want["bos_token"].get<std::string>());
  EXPECT_EQ(tok.eos_token()->content, want["eos_token"].get<std::string>());
  EXPECT_EQ(tok.pad_token()->content, want["pad_token"].get<std::string>());
  EXPECT_EQ(tok.unk_token()->content, want["unk_token"].get<std::string>());
  expect_cases(tok, want["cases"]);
  // The control tokens stay whole and are special.
  EXPECT_TRUE(tok.is_special(tok.bos_token()->id));
  const auto files = ft::io::gguf_tokenizer_files(gguf);
  EXPECT_NE(files.tokenizer_config_json.find("chat_template"), std::string::npos);
}

TEST(GgufTokenizer, UnconvertedModelsAreNamed) {
  auto gguf = ft::io::read_gguf_file(kDir + "smollm2_tokenizer.gguf");
  for (auto& [key, value] : gguf.metadata)
    if (key == "tokenizer.ggml.model") value = ft::io::GgufValue{std::string("t5")};
  try {
    ft::io::gguf_tokenizer_files(gguf);
    FAIL() << "no error";
  } catch (const ft::Error& e) {
    EXPECT_NE(std::string(e.what()).find("'t5'"), std::string::npos) << e.what();
  }
}

TEST(GgufTokenizer, KnownPreTokenizersSplitAsTransformersDoes) {
  const auto want = expected();
  for (const auto& [pre, cases] : want["ids_with_pre"].items()) {
    SCOPED_TRACE(pre);
    auto gguf = ft::io::read_gguf_file(kDir + "smollm2_tokenizer.gguf");
    for (auto& [key, value] : gguf.metadata)
      if (key == "tokenizer.ggml.pre") value = ft::io::GgufValue{pre};
    const auto tok = ft::io::gguf_tokenizer(gguf);
    for (size_t i = 0; i < cases.size(); ++i)
      EXPECT_EQ(tok.encode(want["cases"][i]["text"].get<std::string>(), false),
                cases[i].get<std::vector<int>>())
          << want["cases"][i]["text"];
  }
  // The splits differ from GPT-2's on the code sample (its runs of spaces and "**"): the
  // test has something to tell apart.
  EXPECT_NE(want["ids_with_pre"]["qwen2"][5], want["cases"][5]["ids_no_special"]);
  EXPECT_NE(want["ids_with_pre"]["llama-bpe"][5], want["cases"][5]["ids_no_special"]);
}

TEST(GgufTokenizer, SentencePieceBpeGivesTransformersIds) {
  // A vocabulary without merges: they come from the scores (sentencepiece_merges).
  const auto gguf = ft::io::read_gguf_file(kDir + "sentencepiece.gguf");
  EXPECT_EQ(gguf.find("tokenizer.ggml.merges"), nullptr);
  const auto tok = ft::io::gguf_tokenizer(gguf);
  const auto want = read_json("sentencepiece.json");
  EXPECT_EQ(tok.vocab_size(), want["vocab_size"].get<int>());
  ASSERT_TRUE(tok.bos_token() && tok.eos_token() && tok.unk_token());
  EXPECT_EQ(tok.bos_token()->content, want["bos_token"].get<std::string>());
  EXPECT_EQ(tok.unk_token()->content, want["unk_token"].get<std::string>());
  expect_cases(tok, want["cases"]);
}
