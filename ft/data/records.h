// Records of a JSONL dataset: the formats users have, detected from the first record,
// and turned into one shape the tokenizing step understands (a text, or a conversation).
#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace ft::data {

enum class Format {
  kAuto,         // detect from the first record
  kText,         // {"text": "..."}
  kCompletions,  // {"prompt": "...", "completion": "..."}
  kChat,         // {"messages": [{"role", "content", "tool_calls"?}...], "tools"?: [...]}
  kAlpaca,       // {"instruction", "input"?, "output"}
  kShareGpt,     // {"conversations": [{"from", "value"}...]}
};

// The limits a JSONL record is held to (docs/reliability.md): a line of at most
// kMaxRecordBytes, objects and lists nested at most kMaxRecordDepth deep (chat templates
// and json.dumps recurse through them).
constexpr size_t kMaxRecordBytes = size_t{64} << 20;
constexpr int kMaxRecordDepth = 256;

// One JSONL line as JSON, in time linear in its length (nlohmann's ordered_json finds
// keys by a linear search, which made a line of n keys cost n^2). Keys keep the order
// they were written in; a repeated key keeps its first place and its last value, as
// Python's json.loads does. Throws ft::Error naming `where` for invalid JSON and for
// input past the limits above.
nlohmann::ordered_json parse_record(std::string_view line, const std::string& where);

// "auto", "text", "completions", "chat", "alpaca", "sharegpt"; anything else is an error.
Format parse_format(std::string_view name);
std::string format_name(Format format);

// The format a record is written in, from its keys. Throws ft::Error (place "data",
// naming `where`, e.g. "train.jsonl:1") when no known format matches.
Format detect_format(const nlohmann::ordered_json& record, const std::string& where);

// A record in the one shape tokenizing needs. A text record keeps `text`; every other
// format becomes OpenAI-style `messages` (role/content objects) and optional `tools`.
struct Record {
  bool is_text = false;
  std::string text;
  nlohmann::ordered_json messages = nlohmann::ordered_json::array();
  nlohmann::ordered_json tools;  // null when the record has none
};

// Checks the fields of `format` (types included) and converts. Errors name `where`.
Record to_record(const nlohmann::ordered_json& record, Format format, const std::string& where);

}  // namespace ft::data
