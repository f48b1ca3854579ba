// Loading: the configuration files' special tokens and BOS/EOS rules, and the errors for
// bad files, unknown versions and unsupported components.
#include <filesystem>
#include <fstream>
#include <thread>

#include <gtest/gtest.h>

#include "ft/core/error.h"
#include "tests/tokenizer/tokenizer_fixtures.h"

namespace ft::tokenizer {
namespace {

using testing::cases;
using testing::from_hex;

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::string synthetic_json(const std::string& name) {
  return read_text(testing::tokenizer_dir(name) + "/tokenizer.json");
}

// The fact of the ft::Error that f throws, or "" when it throws none.
template <typename F>
std::string error_of(F f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Config, SpecialTokensOfTheRealConfigs) {
  FT_REQUIRE_SHARED_TOKENIZERS();
  const Tokenizer& qwen = testing::load("qwen3");
  ASSERT_TRUE(qwen.eos_token().has_value());
  EXPECT_EQ(qwen.eos_token()->content, "<|im_end|>");
  EXPECT_EQ(qwen.eos_token()->id, 151645);
  EXPECT_FALSE(qwen.bos_token().has_value());  // "bos_token": null
  EXPECT_EQ(qwen.pad_token()->content, "<|endoftext|>");
  EXPECT_EQ(qwen.vocab_size(), 151669);  // model 151643 + 26 added
  EXPECT_TRUE(qwen.is_special(151644));
  EXPECT_FALSE(qwen.is_special(151665));  // <tool_response>: added, not special
  EXPECT_EQ(qwen.special_token_ids().size(), 14u);

  const Tokenizer& llama = testing::load("llama3");
  EXPECT_EQ(llama.bos_token()->id, 128000);
  EXPECT_EQ(llama.eos_token()->id, 128001);
  EXPECT_EQ(llama.vocab_size(), 128256);
  EXPECT_EQ(llama.token_to_id("<|eot_id|>"), 128009);
  EXPECT_EQ(llama.id_to_token(9906), "Hello");
  EXPECT_FALSE(llama.id_to_token(200000).has_value());

  const Tokenizer& gemma = testing::load("gemma3");
  EXPECT_EQ(gemma.bos_token()->id, 2);
  EXPECT_EQ(gemma.eos_token()->content, "<end_of_turn>");
  EXPECT_EQ(gemma.eos_token_ids(), std::vector<int>{106});
  EXPECT_EQ(gemma.pad_token()->id, 0);
  EXPECT_EQ(gemma.unk_token()->id, 3);
}

TEST(Config, GenerationConfigAddsEosIdsAndSpecialMapFillsGaps) {
  const auto tok = Tokenizer::from_json_text(
      synthetic_json("wordpiece"), R"({"eos_token": "[SEP]"})",
      R"({"eos_token": "[PAD]", "bos_token": {"content": "[CLS]", "lstrip": false}})",
      R"({"eos_token_id": [1, 3, 0]})");
  // tokenizer_config.json wins over special_tokens_map.json; the map fills what it lacks.
  EXPECT_EQ(tok.eos_token()->content, "[SEP]");
  EXPECT_EQ(tok.bos_token()->content, "[CLS]");
  EXPECT_EQ(tok.bos_token()->id, 2);
  EXPECT_EQ(tok.eos_token_ids(), (std::vector<int>{3, 1, 0}));
}

TEST(Config, LlamaClassAppliesAddBosAndAddEos) {
  // transformers' LlamaTokenizerFast rebuilds the post-processor from the two flags; the
  // ids in between are the library's encoding without special tokens.
  const std::string json = synthetic_json("sp_bpe");
  const auto both = Tokenizer::from_json_text(
      json, R"({"tokenizer_class": "LlamaTokenizerFast", "add_bos_token": true,
                "add_eos_token": true, "bos_token": "<s>", "eos_token": "</s>"})");
  const auto neither = Tokenizer::from_json_text(
      json, R"({"tokenizer_class": "LlamaTokenizer", "add_bos_token": false,
                "bos_token": "<s>", "eos_token": "</s>"})");
  const auto other_class = Tokenizer::from_json_text(
      json, R"({"tokenizer_class": "Qwen2Tokenizer", "add_bos_token": false,
                "bos_token": "<s>", "eos_token": "</s>"})");
  for (const auto& c : cases()["sp_bpe"]) {
    const std::string text = from_hex(c["text_hex"]);
    auto plain = c["ids_plain"].get<std::vector<int>>();
    EXPECT_EQ(neither.encode(text), plain);
    EXPECT_EQ(other_class.encode(text), c["ids"].get<std::vector<int>>());  // template kept
    plain.insert(plain.begin(), 1);                                         // <s>
    plain.push_back(2);                                                     // </s>
    EXPECT_EQ(both.encode(text), plain);
  }
  EXPECT_NE(error_of([&] {
              Tokenizer::from_json_text(json, R"({"tokenizer_class": "GemmaTokenizer"})");
            }).find("add_bos_token is set but there is no bos_token"),
            std::string::npos);
}

TEST(Errors, MalformedJsonNamesTheFile) {
  const auto dir = std::filesystem::temp_directory_path() / "ft_tokenizer_bad_json";
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "tokenizer.json") << "{\"version\": \"1.0\", \"model\": ";
  const std::string e = error_of([&] { Tokenizer::from_dir(dir); });
  EXPECT_NE(e.find((dir / "tokenizer.json").string()), std::string::npos) << e;
  EXPECT_NE(e.find("malformed JSON"), std::string::npos) << e;

  std::ofstream(dir / "tokenizer.json") << synthetic_json("wordpiece");
  std::ofstream(dir / "tokenizer_config.json") << "{\"bos_token\": ";
  const std::string e2 = error_of([&] { Tokenizer::from_dir(dir); });
  EXPECT_NE(e2.find("tokenizer_config.json: malformed JSON"), std::string::npos) << e2;
  std::filesystem::remove_all(dir);

  EXPECT_NE(error_of([] { Tokenizer::from_dir("/nonexistent/dir"); }).find("no tokenizer.json"),
            std::string::npos);
}

// A number past double's range is nlohmann's out_of_range, not a parse_error (the fuzz
// target's input in fuzz/regressions/tokenizer_json/).
TEST(Errors, NumberPastDoubleIsMalformedJson) {
  EXPECT_EQ(error_of([] {
              Tokenizer::from_json_text(R"({"version": "1.0", "model": {"dropout": 1e999}})");
            }),
            "[tokenizer] tokenizer.json: malformed JSON: [json.exception.out_of_range.406] number "
            "overflow parsing '1e999'");
}

TEST(Config, ModelTypeFollowsFromTheFieldsWhenLeftOut) {
  for (const char* name : {"wordpiece", "unigram", "sp_bpe"}) {
    auto j = nlohmann::json::parse(synthetic_json(name));
    j["model"].erase("type");
    const auto tok = Tokenizer::from_json_text(j.dump());
    for (const auto& c : cases()[name])
      EXPECT_EQ(tok.encode(from_hex(c["text_hex"])), c["ids"].get<std::vector<int>>()) << name;
  }
}

TEST(Errors, UnknownVersion) {
  auto j = nlohmann::json::parse(synthetic_json("wordpiece"));
  j["version"] = "2.0";
  EXPECT_NE(error_of([&] {
              Tokenizer::from_json_text(j.dump());
            }).find("unknown tokenizer.json version '2.0'"),
            std::string::npos);
}

TEST(Errors, UnsupportedComponentsAreNamed) {
  const auto base = nlohmann::json::parse(synthetic_json("wordpiece"));
  const std::pair<const char*, const char*> cases[] = {{"normalizer", "Precompiled"},
                                                       {"pre_tokenizer", "UnicodeScripts"},
                                                       {"decoder", "CTC"},
                                                       {"post_processor", "Fancy"},
                                                       {"model", "WordLevel"}};
  for (auto [key, type] : cases) {
    auto j = base;
    j[key] = {{"type", type}};
    const std::string e = error_of([&] { Tokenizer::from_json_text(j.dump()); });
    EXPECT_NE(e.find(std::string("'") + type + "'"), std::string::npos) << key << ": " << e;
  }
  auto j = base;
  j["pre_tokenizer"] = {{"type", "Split"},
                        {"pattern", {{"Regex", "(unclosed"}}},
                        {"behavior", "Isolated"},
                        {"invert", false}};
  EXPECT_NE(error_of([&] { Tokenizer::from_json_text(j.dump()); }).find("(unclosed"),
            std::string::npos);
}

// A null element in a Sequence is refused when loading; it used to become a missing
// stage that crashed the first encode or decode.
TEST(Errors, SequenceWithANullElement) {
  const auto base = nlohmann::json::parse(synthetic_json("wordpiece"));
  const std::tuple<const char*, const char*, const char*> stages[] = {
      {"normalizer", "normalizers", "normalizer"},
      {"pre_tokenizer", "pretokenizers", "pre-tokenizer"},
      {"post_processor", "processors", "post-processor"},
      {"decoder", "decoders", "decoder"}};
  for (auto [key, list, stage] : stages) {
    auto j = base;
    j[key] = {
        {"type", "Sequence"},
        {list, {nlohmann::json{{"type", "Sequence"}, {list, nlohmann::json::array()}}, nullptr}}};
    EXPECT_EQ(error_of([&] { Tokenizer::from_json_text(j.dump()); }),
              std::string("[tokenizer] tokenizer.json: Sequence ") + stage + ": element 1 of \"" +
                  list + "\" is null, not a " + stage);
  }
}

// Ids are checked as integers in [0, 2^24) before any table is sized by them.
TEST(Errors, TokenIdsOutOfRange) {
  auto j = nlohmann::json::parse(synthetic_json("wordpiece"));
  j["model"]["vocab"]["huge"] = 4294967301;  // 2^32 + 5 used to load as 5
  EXPECT_EQ(error_of([&] { Tokenizer::from_json_text(j.dump()); }),
            "[tokenizer] tokenizer.json: WordPiece vocabulary id of 'huge' 4294967301 is outside "
            "[0, 16777216), the ids ft loads");
  j = nlohmann::json::parse(synthetic_json("wordpiece"));
  j["added_tokens"] = {{{"id", 2147483647}, {"content", "<big>"}}};
  EXPECT_EQ(error_of([&] { Tokenizer::from_json_text(j.dump()); }),
            "[tokenizer] tokenizer.json: added token id 2147483647 is outside [0, 16777216), the "
            "ids ft loads");
}

// Counts are checked before any conversion (2.1e116 to size_t was undefined).
TEST(Errors, CountsThatAreNoCounts) {
  auto j = nlohmann::json::parse(synthetic_json("wordpiece"));
  j["model"]["max_input_chars_per_word"] = 2.1e116;
  EXPECT_EQ(error_of([&] { Tokenizer::from_json_text(j.dump()); }),
            "[tokenizer] tokenizer.json: WordPiece 'max_input_chars_per_word' is not a count "
            "below 2^31: 2.1e+116");
  j = nlohmann::json::parse(synthetic_json("wordpiece"));
  j["decoder"] = {{"type", "Strip"}, {"content", " "}, {"start", -1}, {"stop", 0}};
  EXPECT_EQ(error_of([&] { Tokenizer::from_json_text(j.dump()); }),
            "[tokenizer] tokenizer.json: Strip decoder 'start' is not a count below 2^31: -1");
}

TEST(Threads, ConcurrentEncodesAgree) {
  FT_REQUIRE_SHARED_TOKENIZERS();
  const Tokenizer& tok = testing::load("llama3");
  std::string text;
  for (const auto& c : cases()["llama3"]) text += from_hex(c["text_hex"]);
  const auto expected = tok.encode(text);
  std::vector<std::vector<int>> got(4);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int k = 0; k < 20; ++k) got[t] = tok.encode(text);
    });
  for (auto& th : threads) th.join();
  for (const auto& g : got) EXPECT_EQ(g, expected);
}

}  // namespace
}  // namespace ft::tokenizer
