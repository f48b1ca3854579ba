// ft template: render a tokenizer's chat template over a conversation, exactly as
// transformers' apply_chat_template(..., tokenize=False) would; nothing is added.
#include <fstream>
#include <iostream>
#include <iterator>

#include <nlohmann/json.hpp>

#include "apps/ft/commands.h"
#include "ft/core/error.h"
#include "ft/template/chat_template.h"

namespace ft::cli {
namespace {

struct TemplateOptions {
  std::string tokenizer;
  std::string messages;
  std::string tools;
  std::string documents;
  std::string name;
  bool add_generation_prompt = false;
};

nlohmann::ordered_json read_json(const std::string& path) {
  std::string text;
  if (path == "-") {
    text.assign(std::istreambuf_iterator<char>(std::cin), {});
  } else {
    std::ifstream in(path, std::ios::binary);
    FT_CHECK(in, "template", path, ": cannot open");
    text.assign(std::istreambuf_iterator<char>(in), {});
  }
  try {
    return nlohmann::ordered_json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw Error("template", path + ": not valid JSON: " + e.what());
  }
}

void run(const TemplateOptions& opt) {
  auto chat = chat::ChatTemplate::from_tokenizer_dir(opt.tokenizer, opt.name);
  nlohmann::ordered_json input = read_json(opt.messages);
  chat::RenderOptions render;
  render.add_generation_prompt = opt.add_generation_prompt;
  // A bare list of messages, or a record {"messages": [...], "tools": [...]}.
  nlohmann::ordered_json messages = input;
  if (input.is_object()) {
    FT_CHECK(input.contains("messages"), "template", opt.messages,
             ": expected a list of messages or an object with \"messages\"");
    messages = input["messages"];
    if (input.contains("tools")) render.tools = input["tools"];
    if (input.contains("documents")) render.documents = input["documents"];
  }
  if (!opt.tools.empty()) render.tools = read_json(opt.tools);
  if (!opt.documents.empty()) render.documents = read_json(opt.documents);
  std::cout << chat.render(messages, render) << std::flush;
}

}  // namespace

void add_template_command(CLI::App& app) {
  auto* cmd =
      app.add_subcommand("template", "Render a tokenizer's chat template over a conversation");
  auto opt = std::make_shared<TemplateOptions>();
  cmd->add_option("--tokenizer", opt->tokenizer,
                  "Tokenizer folder (tokenizer_config.json, chat_template.jinja)")
      ->required();
  cmd->add_option(
         "--messages", opt->messages,
         "JSON file: a list of messages, or {\"messages\": [...], \"tools\": [...]}; - reads stdin")
      ->required();
  cmd->add_flag("--add-generation-prompt", opt->add_generation_prompt,
                "End with the assistant turn's header");
  cmd->add_option("--tools", opt->tools, "JSON file with a list of tool definitions");
  cmd->add_option("--documents", opt->documents, "JSON file with a list of documents");
  cmd->add_option("--name", opt->name,
                  "Named template to use (e.g. tool_use); default as transformers picks");
  cmd->callback([opt] { run(*opt); });
}

}  // namespace ft::cli
