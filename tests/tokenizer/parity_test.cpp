// Encoding and decoding against the Hugging Face tokenizers library
// (tests/golden/make_tokenizer_fixtures.py): the real Qwen3, Llama 3 and Gemma 3 tokenizers
// and synthetic Unigram, WordPiece and SentencePiece-style BPE ones.
#include <gtest/gtest.h>

#include "tests/tokenizer/tokenizer_fixtures.h"

namespace ft::tokenizer {
namespace {

using testing::cases;
using testing::from_hex;
using testing::load;

class Parity : public ::testing::TestWithParam<std::string> {};

TEST_P(Parity, EncodeMatchesHuggingFace) {
  if (ft::tokenizer::testing::is_shared(GetParam())) FT_REQUIRE_SHARED_TOKENIZERS();
  const Tokenizer& tok = load(GetParam());
  for (const auto& c : cases()[GetParam()]) {
    const std::string text = from_hex(c["text_hex"]);
    SCOPED_TRACE(c["name"].get<std::string>());
    EXPECT_EQ(tok.encode(text, true), c["ids"].get<std::vector<int>>());
    EXPECT_EQ(tok.encode(text, false), c["ids_plain"].get<std::vector<int>>());
  }
}

TEST_P(Parity, DecodeMatchesHuggingFace) {
  if (ft::tokenizer::testing::is_shared(GetParam())) FT_REQUIRE_SHARED_TOKENIZERS();
  const Tokenizer& tok = load(GetParam());
  for (const auto& c : cases()[GetParam()]) {
    SCOPED_TRACE(c["name"].get<std::string>());
    const auto ids = c["ids"].get<std::vector<int>>();
    EXPECT_EQ(tok.decode(ids, false), c["decoded"].get<std::string>());
    EXPECT_EQ(tok.decode(ids, true), c["decoded_skip"].get<std::string>());
  }
}

INSTANTIATE_TEST_SUITE_P(Tokenizers, Parity,
                         ::testing::Values("qwen3", "llama3", "gemma3", "unigram", "wordpiece",
                                           "sp_bpe", "byte_level", "metaspace_first"));

}  // namespace
}  // namespace ft::tokenizer
