#include <gtest/gtest.h>

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
