#include "ft/data/records.h"

#include <unordered_map>
#include <vector>

#include "ft/core/error.h"

namespace ft::data {
namespace {

using Json = nlohmann::ordered_json;

// Builds the JSON value from nlohmann's SAX events, finding each object's keys in a
// hash map instead of ordered_json's linear search.
class RecordBuilder {
 public:
  explicit RecordBuilder(const std::string& where) : where_(where) {}

  bool null() { return put(Json(nullptr)); }
  bool boolean(bool v) { return put(Json(v)); }
  bool number_integer(Json::number_integer_t v) { return put(Json(v)); }
  bool number_unsigned(Json::number_unsigned_t v) { return put(Json(v)); }
  bool number_float(Json::number_float_t v, const std::string&) { return put(Json(v)); }
  bool string(std::string& v) { return put(Json(std::move(v))); }
  bool binary(Json::binary_t& v) { return put(Json(std::move(v))); }
  bool start_object(std::size_t) { return open(Json::object()); }
  bool start_array(std::size_t) { return open(Json::array()); }
  bool end_object() {
    keys_.pop_back();
    open_.pop_back();
    return true;
  }
  bool end_array() {
    open_.pop_back();
    return true;
  }
  bool key(std::string& key) {
    auto& entries =
        static_cast<Json::object_t::Container&>(open_.back()->get_ref<Json::object_t&>());
    auto [it, fresh] = keys_.back().emplace(key, entries.size());
    if (fresh) entries.emplace_back(std::move(key), nullptr);
    slot_ = &entries[it->second].second;
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& e) {
    throw Error("data", where_ + ": not valid JSON: " + e.what());
  }

  Json take() { return std::move(root_); }

 private:
  // Places v where the next value goes: the root, the end of the open list, or the
  // slot of the last key.
  Json* place(Json v) {
    if (open_.empty()) {
      root_ = std::move(v);
      return &root_;
    }
    Json& parent = *open_.back();
    if (parent.is_array()) {
      auto& items = parent.get_ref<Json::array_t&>();
      items.push_back(std::move(v));
      return &items.back();
    }
    *slot_ = std::move(v);
    return slot_;
  }
  bool put(Json v) {
    place(std::move(v));
    return true;
  }
  bool open(Json container) {
    FT_CHECK(open_.size() < static_cast<size_t>(kMaxRecordDepth), "data", where_,
             ": JSON nested deeper than ", kMaxRecordDepth, " levels");
    const bool is_object = container.is_object();
    open_.push_back(place(std::move(container)));
    if (is_object) keys_.emplace_back();
    return true;
  }

  const std::string& where_;
  Json root_;
  std::vector<Json*> open_;  // the containers being filled, innermost last
  std::vector<std::unordered_map<std::string, size_t>> keys_;  // key -> index, per open object
  Json* slot_ = nullptr;
};

const std::string& string_field(const Json& record, const char* key, const std::string& where) {
  FT_CHECK(record.contains(key), "data", where, ": missing field \"", key, "\"");
  const Json& v = record.at(key);
  FT_CHECK(v.is_string(), "data", where, ": field \"", key, "\" must be a string, got ",
           v.type_name());
  return v.get_ref<const std::string&>();
}

Json message(const std::string& role, const std::string& content) {
  Json m = Json::object();
  m["role"] = role;
  m["content"] = content;
  return m;
}

// ShareGPT speaker names, as the tools that write ShareGPT files use them.
std::string sharegpt_role(const std::string& from, const std::string& where) {
  if (from == "human" || from == "user") return "user";
  if (from == "gpt" || from == "assistant" || from == "model") return "assistant";
  if (from == "system") return "system";
  if (from == "tool" || from == "function_response" || from == "observation") return "tool";
  throw Error("data", where + ": unknown ShareGPT speaker \"" +
                          (from.size() > 40 ? from.substr(0, 40) + "..." : from) + "\"");
}

void check_messages(const Json& messages, const std::string& where) {
  FT_CHECK(messages.is_array(), "data", where, ": \"messages\" must be a list, got ",
           messages.type_name());
  FT_CHECK(!messages.empty(), "data", where, ": \"messages\" is empty");
  for (size_t i = 0; i < messages.size(); ++i) {
    const Json& m = messages[i];
    FT_CHECK(m.is_object(), "data", where, ": message ", i, " must be an object");
    FT_CHECK(m.contains("role") && m["role"].is_string(), "data", where, ": message ", i,
             " needs a string \"role\"");
    bool has_calls = m.contains("tool_calls") && !m["tool_calls"].is_null();
    if (has_calls) {
      FT_CHECK(m["tool_calls"].is_array(), "data", where, ": message ", i,
               " \"tool_calls\" must be a list");
    }
    if (m.contains("content") && !m["content"].is_null()) {
      FT_CHECK(m["content"].is_string() || m["content"].is_array(), "data", where, ": message ", i,
               " \"content\" must be a string or a list, got ", m["content"].type_name());
    } else {
      FT_CHECK(has_calls, "data", where, ": message ", i, " has no \"content\"");
    }
  }
}

}  // namespace

Json parse_record(std::string_view line, const std::string& where) {
  FT_CHECK(line.size() <= kMaxRecordBytes, "data", where, ": a line of ", line.size(),
           " bytes is longer than ft reads (", kMaxRecordBytes, ")");
  RecordBuilder builder(where);
  Json::sax_parse(line, &builder);
  return builder.take();
}

Format parse_format(std::string_view name) {
  if (name == "auto") return Format::kAuto;
  if (name == "text") return Format::kText;
  if (name == "completions") return Format::kCompletions;
  if (name == "chat") return Format::kChat;
  if (name == "alpaca") return Format::kAlpaca;
  if (name == "sharegpt") return Format::kShareGpt;
  throw Error("data", "unknown format '" + std::string(name) +
                          "' (expected auto, text, completions, chat, alpaca or sharegpt)");
}

std::string format_name(Format format) {
  switch (format) {
    case Format::kAuto:
      return "auto";
    case Format::kText:
      return "text";
    case Format::kCompletions:
      return "completions";
    case Format::kChat:
      return "chat";
    case Format::kAlpaca:
      return "alpaca";
    case Format::kShareGpt:
      return "sharegpt";
  }
  FT_ASSERT(false);
  return "";
}

Format detect_format(const Json& record, const std::string& where) {
  FT_CHECK(record.is_object(), "data", where, ": a record must be a JSON object, got ",
           record.type_name());
  if (record.contains("messages")) return Format::kChat;
  if (record.contains("conversations")) return Format::kShareGpt;
  if (record.contains("instruction") && record.contains("output")) return Format::kAlpaca;
  if (record.contains("prompt") && record.contains("completion")) return Format::kCompletions;
  if (record.contains("text")) return Format::kText;
  // The first few keys: a record may have thousands.
  std::string keys;
  size_t listed = 0;
  for (const auto& [k, v] : record.items()) {
    if (listed == 5) {
      keys += ", ... " + std::to_string(record.size()) + " keys in all";
      break;
    }
    keys += (listed++ ? ", " : "") + (k.size() > 40 ? k.substr(0, 40) + "..." : k);
  }
  throw Error("data", where + ": unknown record format with keys {" + keys +
                          "} (expected text, prompt/completion, messages, "
                          "instruction/output or conversations)");
}

Record to_record(const Json& record, Format format, const std::string& where) {
  FT_CHECK(record.is_object(), "data", where, ": a record must be a JSON object, got ",
           record.type_name());
  Record out;
  switch (format) {
    case Format::kAuto:
      FT_ASSERT(false);
      break;
    case Format::kText:
      out.is_text = true;
      out.text = string_field(record, "text", where);
      break;
    case Format::kCompletions:
      out.messages.push_back(message("user", string_field(record, "prompt", where)));
      out.messages.push_back(message("assistant", string_field(record, "completion", where)));
      break;
    case Format::kAlpaca: {
      std::string prompt = string_field(record, "instruction", where);
      if (record.contains("input") && !record["input"].is_null()) {
        const std::string& input = string_field(record, "input", where);
        if (!input.empty()) prompt += "\n\n" + input;
      }
      if (record.contains("system") && !record["system"].is_null()) {
        out.messages.push_back(message("system", string_field(record, "system", where)));
      }
      out.messages.push_back(message("user", prompt));
      out.messages.push_back(message("assistant", string_field(record, "output", where)));
      break;
    }
    case Format::kShareGpt: {
      FT_CHECK(record.contains("conversations"), "data", where,
               ": missing field \"conversations\"");
      const Json& turns = record["conversations"];
      FT_CHECK(turns.is_array() && !turns.empty(), "data", where,
               ": \"conversations\" must be a non-empty list");
      for (size_t i = 0; i < turns.size(); ++i) {
        std::string turn = where + " turn " + std::to_string(i);
        FT_CHECK(turns[i].is_object(), "data", turn, " must be an object");
        out.messages.push_back(message(sharegpt_role(string_field(turns[i], "from", turn), turn),
                                       string_field(turns[i], "value", turn)));
      }
      break;
    }
    case Format::kChat:
      FT_CHECK(record.contains("messages"), "data", where, ": missing field \"messages\"");
      check_messages(record["messages"], where);
      out.messages = record["messages"];
      break;
  }
  if (record.contains("tools") && !record["tools"].is_null()) {
    FT_CHECK(record["tools"].is_array(), "data", where, ": \"tools\" must be a list");
    out.tools = record["tools"];
  }
  return out;
}

}  // namespace ft::data
