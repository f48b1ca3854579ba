#include <gtest/gtest.h>

#include <chrono>

#include "ft/core/error.h"
#include "ft/data/records.h"

using Json = nlohmann::ordered_json;
using ft::data::Format;

TEST(Records, DetectsEachFormat) {
  EXPECT_EQ(ft::data::detect_format(Json::parse(R"({"text":"a"})"), "f:1"), Format::kText);
  EXPECT_EQ(ft::data::detect_format(Json::parse(R"({"prompt":"a","completion":"b"})"), "f:1"),
            Format::kCompletions);
  EXPECT_EQ(ft::data::detect_format(Json::parse(R"({"messages":[]})"), "f:1"), Format::kChat);
  EXPECT_EQ(
      ft::data::detect_format(Json::parse(R"({"instruction":"a","input":"","output":"b"})"), "f:1"),
      Format::kAlpaca);
  EXPECT_EQ(ft::data::detect_format(Json::parse(R"({"conversations":[]})"), "f:1"),
            Format::kShareGpt);
}

TEST(Records, UnknownFormatNamesPlaceAndKeys) {
  try {
    ft::data::detect_format(Json::parse(R"({"question":"a","answer":"b"})"), "d.jsonl:7");
    FAIL();
  } catch (const ft::Error& e) {
    EXPECT_NE(e.fact().find("d.jsonl:7"), std::string::npos);
    EXPECT_NE(e.fact().find("question, answer"), std::string::npos);
  }
  EXPECT_THROW(ft::data::parse_format("csv"), ft::Error);
  EXPECT_EQ(ft::data::parse_format("sharegpt"), Format::kShareGpt);
}

TEST(Records, ConvertsToMessages) {
  auto a =
      ft::data::to_record(Json::parse(R"({"instruction":"Add","input":"1 and 2","output":"3"})"),
                          Format::kAlpaca, "f:1");
  ASSERT_EQ(a.messages.size(), 2u);
  EXPECT_EQ(a.messages[0]["content"], "Add\n\n1 and 2");
  EXPECT_EQ(a.messages[1]["role"], "assistant");
  EXPECT_EQ(a.messages[1]["content"], "3");
  auto s = ft::data::to_record(
      Json::parse(
          R"({"conversations":[{"from":"system","value":"S"},{"from":"human","value":"H"},{"from":"gpt","value":"G"}]})"),
      Format::kShareGpt, "f:1");
  ASSERT_EQ(s.messages.size(), 3u);
  EXPECT_EQ(s.messages[0]["role"], "system");
  EXPECT_EQ(s.messages[1]["role"], "user");
  EXPECT_EQ(s.messages[2]["role"], "assistant");
  EXPECT_EQ(s.messages[2]["content"], "G");
}

TEST(Records, WrongFieldTypesAreErrors) {
  auto expect_error = [](const char* json, Format f, const char* needle) {
    try {
      ft::data::to_record(Json::parse(json), f, "x.jsonl:3");
      ADD_FAILURE() << json;
    } catch (const ft::Error& e) {
      EXPECT_NE(e.fact().find("x.jsonl:3"), std::string::npos) << e.what();
      EXPECT_NE(e.fact().find(needle), std::string::npos) << e.what();
    }
  };
  expect_error(R"({"text": 5})", Format::kText, "\"text\" must be a string");
  expect_error(R"({"prompt": "a"})", Format::kCompletions, "missing field \"completion\"");
  expect_error(R"({"messages": "hi"})", Format::kChat, "must be a list");
  expect_error(R"({"messages": [{"content": "x"}]})", Format::kChat, "\"role\"");
  expect_error(R"({"conversations":[{"from":"alien","value":"x"}]})", Format::kShareGpt,
               "unknown ShareGPT speaker");
  expect_error(R"([1, 2])", Format::kText, "must be a JSON object");
}

namespace {

// The whole message of the ft::Error that f throws ("" when none is thrown).
template <typename F>
std::string error_of(F f) {
  try {
    f();
  } catch (const ft::Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

// Keys in the order written; a repeated key keeps its first place and its last value,
// as Python's json.loads gives them.
TEST(RecordLines, ParseKeepsOrderAndTheLastOfRepeatedKeys) {
  const Json j = ft::data::parse_record(R"({"b":1,"a":[{"x":null}],"b":2.5,"c":"s"})", "f:1");
  EXPECT_EQ(j.dump(), R"({"b":2.5,"a":[{"x":null}],"c":"s"})");
  EXPECT_EQ(ft::data::parse_record("[1, true]", "f:1").dump(), "[1,true]");
  EXPECT_EQ(error_of([] { ft::data::parse_record(R"({"a":1,})", "f:3"); }),
            "[data] f:3: not valid JSON: [json.exception.parse_error.101] parse error at line 1, "
            "column 8: syntax error while parsing object key - unexpected '}'; expected string "
            "literal");
}

// 200,000 keys took 49 s when each key was found by a linear search; linear now.
TEST(RecordLines, ManyKeysParseInLinearTime) {
  std::string line = "{";
  for (int i = 0; i < 200000; ++i) line += (i ? ",\"k" : "\"k") + std::to_string(i) + "\":0";
  line += ",\"text\":\"t\"}";
  const auto start = std::chrono::steady_clock::now();
  const Json j = ft::data::parse_record(line, "f:1");
  EXPECT_EQ(ft::data::detect_format(j, "f:1"), Format::kText);
  EXPECT_EQ(ft::data::to_record(j, Format::kText, "f:1").text, "t");
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  // An unknown record names its first few keys, not all 200,000.
  line.replace(line.size() - 11, 6, "\"txet\"");
  EXPECT_EQ(error_of([&] { ft::data::detect_format(ft::data::parse_record(line, "f:1"), "f:1"); }),
            "[data] f:1: unknown record format with keys {k0, k1, k2, k3, k4, ... 200001 keys in "
            "all} (expected text, prompt/completion, messages, instruction/output or "
            "conversations)");
}

TEST(RecordLines, DepthAndLengthLimits) {
  const std::string deep = std::string(257, '[') + std::string(257, ']');
  EXPECT_EQ(error_of([&] { ft::data::parse_record(deep, "f:2"); }),
            "[data] f:2: JSON nested deeper than 256 levels");
  const std::string ok = std::string(256, '[') + std::string(256, ']');
  EXPECT_EQ(ft::data::parse_record(ok, "f:2").size(), 1u);
  const std::string long_line(ft::data::kMaxRecordBytes + 1, ' ');
  EXPECT_EQ(error_of([&] { ft::data::parse_record(long_line, "f:9"); }),
            "[data] f:9: a line of 67108865 bytes is longer than ft reads (67108864)");
}
