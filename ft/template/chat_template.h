// Chat templates: the Jinja template a tokenizer ships with, rendered like
// transformers' tokenizer.apply_chat_template(..., tokenize=False).
//
//   auto t = ft::chat::ChatTemplate::from_tokenizer_dir("models/qwen3");
//   std::string prompt = t.render(messages, {.add_generation_prompt = true});
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace ft::jinja {
struct Node;
}

namespace ft::chat {

// JSON is taken as nlohmann::ordered_json because key order is visible in the
// output (tojson, dict iteration), and it must be the order the input was written in.
struct RenderOptions {
  bool add_generation_prompt = false;
  nlohmann::ordered_json tools;  // a list of JSON-schema tools; null: none (the template sees None)
  nlohmann::ordered_json documents;  // a list of {"title", "text"} objects; null: none
  // More template variables, as apply_chat_template's **kwargs (e.g. enable_thinking);
  // they override the tokenizer's special tokens of the same name.
  nlohmann::ordered_json variables = nlohmann::ordered_json::object();
};

class ChatTemplate {
 public:
  // Reads the templates of a tokenizer folder the way transformers loads them:
  // chat_template.jinja and additional_chat_templates/*.jinja when present, otherwise
  // "chat_template" in tokenizer_config.json (a string, or a list of {name, template}).
  // Special tokens (bos_token, eos_token, ...) come from tokenizer_config.json and
  // special_tokens_map.json. `name` picks a named template; empty picks "tool_use"
  // when tools are given and it exists, else "default".
  static ChatTemplate from_tokenizer_dir(const std::filesystem::path& dir,
                                         const std::string& name = "");
  // The same, or nullopt for a folder that has no chat template (a tokenizer without one
  // is fine: conversations are then concatenated, prompts given as they are).
  static std::optional<ChatTemplate> from_tokenizer_dir_if_any(const std::filesystem::path& dir);
  // One template from its source; variables are what every render sees.
  static ChatTemplate from_string(const std::string& source, nlohmann::ordered_json variables =
                                                                 nlohmann::ordered_json::object());
  // `--template SPEC`: a named template (named_templates.h: chatml, llama3, ...) or a
  // .jinja file; variables as from_string's. Throws ft::Error listing the names for a
  // spec that is neither.
  static ChatTemplate from_spec(const std::string& spec, nlohmann::ordered_json variables);

  // The special tokens a template sees (bos_token, eos_token, ...) as tokenizer_config.json
  // states them, completed by special_tokens_map.json in the same folder when there is one.
  static nlohmann::ordered_json special_tokens(const nlohmann::ordered_json& tokenizer_config,
                                               const std::filesystem::path& dir = {});

  // messages: a list of {"role", "content", ...} objects. Throws ft::Error for a
  // template error (with line and column) and for raise_exception(msg) (fact() == msg).
  std::string render(const nlohmann::ordered_json& messages,
                     const RenderOptions& options = {}) const;

  // The names of the templates, "default" first when present.
  std::vector<std::string> names() const;
  // The source of the template render uses for these options.
  const std::string& source(bool with_tools = false) const;
  // The variables every render sees: the tokenizer's special tokens.
  const nlohmann::ordered_json& variables() const { return variables_; }

 private:
  struct Template {
    std::string name;
    std::string source;
    std::shared_ptr<const std::vector<std::unique_ptr<jinja::Node>>> body;
  };
  const Template& pick(bool with_tools) const;

  std::vector<Template> templates_;
  std::string chosen_;  // empty: transformers' choice by whether tools are given
  nlohmann::ordered_json variables_ = nlohmann::ordered_json::object();
};

}  // namespace ft::chat
