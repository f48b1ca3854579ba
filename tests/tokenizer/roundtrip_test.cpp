// decode(encode(x)) == x where the tokenizer keeps all of the text: byte-level BPE
// (Qwen3, Llama 3) and SentencePiece-style BPE with byte fallback (Gemma 3). Invalid UTF-8
// comes back as U+FFFD, the way encode reads it.
#include <random>

#include <gtest/gtest.h>

#include "ft/tokenizer/unicode.h"
#include "tests/tokenizer/tokenizer_fixtures.h"

namespace ft::tokenizer {
namespace {

using testing::cases;
using testing::from_hex;
using testing::load;

class RoundTrip : public ::testing::TestWithParam<std::string> {};

TEST_P(RoundTrip, FixtureTexts) {
  if (ft::tokenizer::testing::is_shared(GetParam())) FT_REQUIRE_SHARED_TOKENIZERS();
  const Tokenizer& tok = load(GetParam());
  for (const auto& c : cases()[GetParam()]) {
    const std::string text = from_hex(c["text_hex"]);
    SCOPED_TRACE(c["name"].get<std::string>());
    EXPECT_EQ(tok.decode(tok.encode(text, false)), utf8_repair(text));
    // With the template's BOS and the special tokens skipped, the same text again.
    EXPECT_EQ(tok.decode(tok.encode(text, true), true), tok.decode(tok.encode(text, false), true));
  }
}

TEST_P(RoundTrip, RandomBytes) {
  if (ft::tokenizer::testing::is_shared(GetParam())) FT_REQUIRE_SHARED_TOKENIZERS();
  const Tokenizer& tok = load(GetParam());
  std::mt19937 rng(1234);
  // Mostly ASCII with some high bytes: valid multi-byte characters, broken ones, spaces.
  const std::string alphabet = std::string("abc XYZ 019.,'\n\t") + "\xC3\xA9\xE4\xB8\x96\xF0\x9F";
  for (int trial = 0; trial < 200; ++trial) {
    std::string text;
    const int n = std::uniform_int_distribution<int>(0, 40)(rng);
    for (int i = 0; i < n; ++i)
      text += alphabet[std::uniform_int_distribution<size_t>(0, alphabet.size() - 1)(rng)];
    EXPECT_EQ(tok.decode(tok.encode(text, false)), utf8_repair(text))
        << ::testing::PrintToString(text);
  }
}

INSTANTIATE_TEST_SUITE_P(Tokenizers, RoundTrip, ::testing::Values("qwen3", "llama3", "gemma3"));

TEST(Pieces, AreTheTokenStringsOfTheIds) {
  FT_REQUIRE_SHARED_TOKENIZERS();
  for (const char* name : {"qwen3", "llama3", "gemma3"}) {
    const Tokenizer& tok = load(name);
    for (const auto& c : cases()[name]) {
      SCOPED_TRACE(std::string(name) + " " + c["name"].get<std::string>());
      const Encoding e = tok.encode_with_pieces(from_hex(c["text_hex"]));
      EXPECT_EQ(e.ids, c["ids"].get<std::vector<int>>());
      EXPECT_EQ(e.pieces, c["tokens"].get<std::vector<std::string>>());
    }
  }
}

TEST(Unicode, RepairReplacesEachMaximalInvalidSubpart) {
  const std::string r = "\xEF\xBF\xBD";
  EXPECT_EQ(utf8_repair("ok"), "ok");
  EXPECT_EQ(utf8_repair("a\xE2\x82"), "a" + r);               // truncated 3-byte
  EXPECT_EQ(utf8_repair("\xF0\x9F\x98 x"), r + " x");         // truncated 4-byte
  EXPECT_EQ(utf8_repair("\xC0\xAF"), r + r);                  // overlong: two parts
  EXPECT_EQ(utf8_repair("\xED\xA0\x80"), r + r + r);          // surrogate
  EXPECT_EQ(utf8_repair("\xF4\x90\x80\x80"), r + r + r + r);  // above U+10FFFF
  EXPECT_EQ(utf8_repair("\xC3\x28"), r + "(");                // bad continuation
  EXPECT_EQ(utf8_repair("\x80\xBF"), r + r);                  // lone continuations
  EXPECT_TRUE(utf8_is_valid("\xF0\x9F\x98\x80"));
  EXPECT_FALSE(utf8_is_valid("\xF0\x9F\x98"));
}

TEST(Unicode, ByteLevelAlphabetIsABijection) {
  for (int b = 0; b < 256; ++b) EXPECT_EQ(char_to_byte(byte_to_char(static_cast<uint8_t>(b))), b);
  EXPECT_EQ(byte_to_char(' '), U'\u0120');  // 'Ġ', the GPT-2 space
  EXPECT_EQ(byte_to_char('\n'), U'\u010A');
  EXPECT_EQ(byte_to_char('A'), U'A');
  EXPECT_EQ(char_to_byte(U'\u4E16'), -1);
}

}  // namespace
}  // namespace ft::tokenizer
