// The tokenizer of a GGUF file against transformers' GGUF conversion: SmolLM2-135M-Instruct's
// metadata (tests/golden/make_gguf_tokenizer_fixtures.py), byte-level BPE with control
// tokens, no BOS, a chat template.
#include <gtest/gtest.h>

#include <fstream>
#include <functional>
#include <string>
#include <tuple>
#include <vector>

#include <nlohmann/json.hpp>

#include "ft/core/error.h"
#include "ft/io/gguf_file.h"
#include "ft/io/gguf_tokenizer.h"
#include "io_test_util.h"
#include "tests/test_util.h"

namespace {

const std::string kDir = std::string(FT_TEST_DATA) + "/gguf/";

nlohmann::json read_json(const std::string& name) {
  std::ifstream in(kDir + name);
  return nlohmann::json::parse(in);
}

// The GGUF file's tokenizer as the folder ft convert writes (tokenizer.json and
// tokenizer_config.json).
void write_folder(const ft::io::GgufFile& gguf, const std::filesystem::path& dir) {
  const ft::io::TokenizerFiles files = ft::io::gguf_tokenizer_files(gguf);
  std::ofstream(dir / "tokenizer.json") << files.tokenizer_json;
  std::ofstream(dir / "tokenizer_config.json") << files.tokenizer_config_json;
}

// The metadata as a GGUF file's, to be read back.
ft::io::GgufFile as_gguf(std::vector<std::pair<std::string, ft::io::GgufValue>> metadata) {
  ft::io::GgufFile g;
  g.path = "exported.gguf";
  g.metadata = std::move(metadata);
  return g;
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

// Note [GGUF tokenizers out]: SmolLM2's vocabulary through a folder and back gives the file's
// own tokens, types, merges and special ids, and the ids transformers gives.
TEST(GgufTokenizerOut, AByteLevelVocabularyComesBackAsItWas) {
  ft::testing::TempDir dir;
  const auto source = ft::io::read_gguf_file(kDir + "smollm2_tokenizer.gguf");
  write_folder(source, dir.path());
  const int64_t n = int64_t(source.at("tokenizer.ggml.tokens").as_array().items.size());
  const auto exported = as_gguf(ft::io::gguf_tokenizer_metadata(dir.path(), n + 3));

  auto strings = [](const ft::io::GgufFile& g, const char* key) {
    std::vector<std::string> out;
    for (const auto& v : g.at(key).as_array().items) out.push_back(v.as_string());
    return out;
  };
  auto ints = [](const ft::io::GgufFile& g, const char* key) {
    std::vector<int64_t> out;
    for (const auto& v : g.at(key).as_array().items) out.push_back(v.as_int());
    return out;
  };
  std::vector<std::string> tokens = strings(exported, "tokenizer.ggml.tokens");
  std::vector<int64_t> types = ints(exported, "tokenizer.ggml.token_type");
  ASSERT_EQ(tokens.size(), size_t(n + 3));
  ASSERT_EQ(types.size(), size_t(n + 3));
  // The embedding's rows past the tokenizer: unused fillers.
  EXPECT_EQ(tokens.back(), "[PAD" + std::to_string(n + 2) + "]");
  EXPECT_EQ(types.back(), 5);
  tokens.resize(size_t(n));
  types.resize(size_t(n));
  EXPECT_EQ(tokens, strings(source, "tokenizer.ggml.tokens"));
  EXPECT_EQ(types, ints(source, "tokenizer.ggml.token_type"));
  EXPECT_EQ(strings(exported, "tokenizer.ggml.merges"), strings(source, "tokenizer.ggml.merges"));
  for (const char* key : {"tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
                          "tokenizer.ggml.unknown_token_id", "tokenizer.ggml.padding_token_id"})
    EXPECT_EQ(exported.at(key).as_int(), source.at(key).as_int()) << key;
  EXPECT_EQ(exported.at("tokenizer.ggml.model").as_string(), "gpt2");
  EXPECT_FALSE(exported.at("tokenizer.ggml.add_bos_token").as_bool());
  EXPECT_FALSE(exported.at("tokenizer.ggml.add_eos_token").as_bool());
  EXPECT_EQ(exported.at("tokenizer.chat_template").as_string(),
            source.at("tokenizer.chat_template").as_string());
  // The folder splits words as GPT-2 does (transformers' reading of "smollm"): llama.cpp's
  // name for that.
  EXPECT_EQ(exported.at("tokenizer.ggml.pre").as_string(), "gpt-2");
  expect_cases(ft::io::gguf_tokenizer(exported), expected()["cases"]);
}

TEST(GgufTokenizerOut, SplitsAreNamedAsLlamaCppNamesThem) {
  const auto want = expected();
  for (const auto& [pre, cases] : want["ids_with_pre"].items()) {
    SCOPED_TRACE(pre);
    ft::testing::TempDir dir;
    auto source = ft::io::read_gguf_file(kDir + "smollm2_tokenizer.gguf");
    for (auto& [key, value] : source.metadata)
      if (key == "tokenizer.ggml.pre") value = ft::io::GgufValue{pre};
    write_folder(source, dir.path());
    const auto exported = as_gguf(ft::io::gguf_tokenizer_metadata(dir.path(), 49152));
    EXPECT_EQ(exported.at("tokenizer.ggml.pre").as_string(), pre);
    const auto tok = ft::io::gguf_tokenizer(exported);
    for (size_t i = 0; i < cases.size(); ++i)
      EXPECT_EQ(tok.encode(want["cases"][i]["text"].get<std::string>(), false),
                cases[i].get<std::vector<int>>());
  }
}

// What llama.cpp would cut otherwise than the folder does is refused, naming the file.
TEST(GgufTokenizerOut, WhatLlamaCppCannotTokenizeIsRefused) {
  const auto source = ft::io::read_gguf_file(kDir + "smollm2_tokenizer.gguf");
  auto refused = [&](const std::function<void(nlohmann::json&)>& edit, int64_t rows,
                     const std::string& fact) {
    SCOPED_TRACE(fact);
    ft::testing::TempDir dir;
    write_folder(source, dir.path());
    auto t = nlohmann::json::parse(std::ifstream(dir.path() / "tokenizer.json"));
    edit(t);
    std::ofstream(dir.path() / "tokenizer.json") << t.dump();
    try {
      ft::io::gguf_tokenizer_metadata(dir.path(), rows);
      ADD_FAILURE() << "no error";
    } catch (const ft::Error& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find(fact), std::string::npos) << what;
      EXPECT_NE(what.find("tokenizer.json"), std::string::npos) << what;
    }
  };
  refused(
      [](auto& t) {
        t["pre_tokenizer"] = {{"type", "Whitespace"}};
      },
      49152, "has no llama.cpp name");
  refused(
      [](auto& t) {
        t["normalizer"] = {{"type", "Lowercase"}};
      },
      49152, "is not applied by llama.cpp");
  refused([](auto& t) { t["model"]["byte_fallback"] = true; }, 49152,
          "are not SentencePiece's spaces");
  refused([](auto&) {}, 100, "more than the model's 100 embedding rows");
}

// The real Llama 3 and Qwen3 tokenizers keep their ids through GGUF metadata.
TEST(GgufTokenizerOut, RealTokenizersKeepTheirIds) {
  FT_REQUIRE_SHARED_TOKENIZERS();
  const std::vector<std::string> texts = {"Hello, world! It's 2024.",
                                          "  def f(x):\n\treturn x ** 2  # square\n",
                                          "Grüße aus Köln, 東京 и Москва 🙂",
                                          "<|im_start|>user\nhi<|im_end|>\n<|begin_of_text|>"};
  for (const auto& [name, pre, rows] :
       {std::tuple{"llama3", "llama-bpe", 128256}, {"qwen3", "qwen2", 151936}}) {
    SCOPED_TRACE(name);
    const std::string dir = ft::testing::shared_tokenizer(name);
    const auto folder = ft::tokenizer::Tokenizer::from_dir(dir);
    const auto exported = as_gguf(ft::io::gguf_tokenizer_metadata(dir, rows));
    EXPECT_EQ(exported.at("tokenizer.ggml.pre").as_string(), pre);
    const auto tok = ft::io::gguf_tokenizer(exported);
    for (const std::string& text : texts) {
      EXPECT_EQ(tok.encode(text), folder.encode(text)) << text;
      EXPECT_EQ(tok.encode(text, false), folder.encode(text, false)) << text;
    }
  }
  // Gemma 3's SentencePiece-style vocabulary: byte tokens, no space before the text, and
  // scores that order the merges as tokenizer.json does.
  const auto gemma =
      as_gguf(ft::io::gguf_tokenizer_metadata(ft::testing::shared_tokenizer("gemma3"), 262208));
  EXPECT_EQ(gemma.at("tokenizer.ggml.model").as_string(), "llama");
  EXPECT_FALSE(gemma.at("tokenizer.ggml.add_space_prefix").as_bool());
  EXPECT_TRUE(gemma.at("tokenizer.ggml.add_bos_token").as_bool());
  const auto& types = gemma.at("tokenizer.ggml.token_type").as_array().items;
  const auto& tokens = gemma.at("tokenizer.ggml.tokens").as_array().items;
  const auto& scores = gemma.at("tokenizer.ggml.scores").as_array().items;
  ASSERT_EQ(types.size(), 262208u);
  ASSERT_EQ(scores.size(), 262208u);
  int bytes = 0;
  for (size_t i = 0; i < types.size(); ++i) bytes += types[i].as_int() == 6;
  EXPECT_EQ(bytes, 256);
  EXPECT_EQ(types[3].as_int(), 2);  // <unk>
  EXPECT_EQ(tokens[2].as_string(), "<bos>");
  EXPECT_EQ(types[2].as_int(), 3);
  EXPECT_EQ(types.back().as_int(), 5);  // past the tokenizer's 262145 tokens
  // "▁t" is made by an early merge, so it outranks "▁the", made later.
  auto score_of = [&](const std::string& token) {
    for (size_t i = 0; i < tokens.size(); ++i)
      if (tokens[i].as_string() == token) return scores[i].as_float();
    ADD_FAILURE() << token;
    return 0.0;
  };
  EXPECT_GT(score_of("\u2581t"), score_of("\u2581the"));
}

// A SentencePiece vocabulary (scores, no merges; transformers derives the merges) through a
// folder and back: its tokens and types, a space before the text, and transformers' ids
// when read again.
TEST(GgufTokenizerOut, ASentencePieceVocabularyKeepsItsIds) {
  ft::testing::TempDir dir;
  const auto source = ft::io::read_gguf_file(kDir + "sentencepiece.gguf");
  write_folder(source, dir.path());
  const int64_t n = int64_t(source.at("tokenizer.ggml.tokens").as_array().items.size());
  const auto exported = as_gguf(ft::io::gguf_tokenizer_metadata(dir.path(), n));
  EXPECT_EQ(exported.at("tokenizer.ggml.model").as_string(), "llama");
  EXPECT_TRUE(exported.at("tokenizer.ggml.add_space_prefix").as_bool());
  EXPECT_EQ(exported.at("tokenizer.ggml.tokens").as_array().items.size(), size_t(n));
  const auto& types = exported.at("tokenizer.ggml.token_type").as_array().items;
  const auto& source_types = source.at("tokenizer.ggml.token_type").as_array().items;
  for (size_t i = 0; i < types.size(); ++i)
    EXPECT_EQ(types[i].as_int(), source_types[i].as_int()) << i;
  expect_cases(ft::io::gguf_tokenizer(exported), read_json("sentencepiece.json")["cases"]);
}
