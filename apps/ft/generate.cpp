// ft generate: text from a model folder (optionally with a LoRA adapter) for a prompt
// or a chat, streamed as it is generated or printed as one JSON object.
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>

#include <mlx/ops.h>
#include <nlohmann/json.hpp>

#include "apps/ft/commands.h"
#include "ft/core/dtype.h"
#include "ft/core/error.h"
#include "ft/data/dataset.h"  // defines: data::load_chat_template
#include "ft/generate/generate.h"
#include "ft/hub/cache.h"
#include "ft/io/adapters.h"
#include "ft/io/gguf.h"
#include "ft/io/gguf_file.h"
#include "ft/io/gguf_tokenizer.h"
#include "ft/models/registry.h"
#include "ft/template/chat_template.h"
#include "ft/tokenizer/tokenizer.h"
#include "ft/train/precision.h"

namespace ft::cli {
namespace {

namespace fs = std::filesystem;
namespace mx = mlx::core;

struct GenerateCliOptions {
  std::string model;
  std::string adapter;
  std::string tokenizer;
  std::string prompt;
  std::string messages;
  std::string chat_template;  // a named template or a .jinja file
  bool raw = false;
  std::string dtype = "float32";
  BaseQuantization quantization;
  generate::GenerateOptions gen{.max_tokens = 256};
  bool as_json = false;
};

nlohmann::ordered_json read_json_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  FT_CHECK(in, "generate", path.string(), ": cannot open");
  std::string text((std::istreambuf_iterator<char>(in)), {});
  try {
    return nlohmann::ordered_json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw Error("generate", path.string() + ": not valid JSON: " + e.what());
  }
}

void run_generate(GenerateCliOptions o) {
  o.model = hub::resolve_model(o.model).string();
  FT_CHECK(o.prompt.empty() != o.messages.empty(), "generate",
           "give exactly one of --prompt and --messages");
  // A GGUF file carries its tokenizer and chat template (Note [GGUF tokenizers]).
  const bool gguf = io::is_gguf_file(o.model) && o.tokenizer.empty();
  fs::path tokenizer_dir = o.tokenizer.empty() ? fs::path(o.model) : fs::path(o.tokenizer);
  std::optional<tokenizer::Tokenizer> loaded;
  std::optional<io::TokenizerFiles> gguf_files;
  if (gguf) {
    gguf_files = io::gguf_tokenizer_files(io::read_gguf_file(o.model));
    loaded.emplace(io::gguf_tokenizer(*gguf_files, o.model));
  } else {
    loaded.emplace(tokenizer::Tokenizer::from_dir(tokenizer_dir));
  }
  // --template, else the one the adapter was trained with, else the tokenizer's.
  std::string spec = o.chat_template;
  if (const auto saved = io::adapter_chat_template(o.adapter); saved && spec.empty())
    spec = saved->string();
  const std::optional<chat::ChatTemplate> chat_template =
      data::load_chat_template(tokenizer_dir, gguf_files, spec);
  const tokenizer::Tokenizer& tokenizer = *loaded;
  mx::Dtype dtype = parse_float_dtype(o.dtype);
  auto model = models::load_model(o.model, dtype);
  quantize_base(*model, o.quantization);
  if (!o.adapter.empty())
    io::apply_adapter(*model, o.adapter, dtype,
                      io::is_gguf_file(o.model)
                          ? io::ModulePrefix{}
                          : models::peft_module_prefix(io::read_config(o.model)));
  model->eval();

  std::vector<int> prompt;
  if (!o.raw && chat_template) {
    nlohmann::ordered_json messages;
    if (!o.messages.empty()) {
      messages = read_json_file(o.messages);
      if (messages.is_object() && messages.contains("messages")) messages = messages["messages"];
      FT_CHECK(messages.is_array(), "generate", o.messages,
               ": expected a list of messages or an object with \"messages\"");
    } else {
      messages = nlohmann::ordered_json::array({{{"role", "user"}, {"content", o.prompt}}});
    }
    // The template writes the special tokens itself, as apply_chat_template does.
    chat::RenderOptions render;
    render.add_generation_prompt = true;
    prompt = tokenizer.encode(chat_template->render(messages, render), false);
  } else {
    FT_CHECK(!o.prompt.empty(), "generate",
             "--messages needs a chat template, and the tokenizer has none (or --raw was given)");
    prompt = tokenizer.encode(o.prompt, true);
  }
  o.gen.eos_ids = tokenizer.eos_token_ids();

  generate::TextCallback stream;
  if (!o.as_json) stream = [](const std::string& piece) { std::cout << piece << std::flush; };
  auto result = generate::generate(*model, prompt, o.gen, generate::decode_with(tokenizer), stream);
  if (o.as_json) {
    nlohmann::json out;
    out["ids"] = result.ids;
    out["text"] = result.text;
    out["finish_reason"] = result.finish_reason;
    std::cout << out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
  } else {
    std::cout << "\n";
  }
}

}  // namespace

void add_generate_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("generate", "Generate text from a model for a prompt or a chat");
  auto o = std::make_shared<GenerateCliOptions>();
  auto& s = o->gen.sampling;
  cmd->add_option("model", o->model, kModelHelp)->required();
  cmd->add_option("--adapter", o->adapter,
                  "LoRA/DoRA adapter folder: adapters.safetensors (mlx-lm) or "
                  "adapter_model.safetensors (PEFT), with adapter_config.json");
  cmd->add_option("--tokenizer", o->tokenizer, "Tokenizer folder (default: the model folder)");
  cmd->add_option("--prompt", o->prompt, "The prompt (a user message unless --raw)");
  cmd->add_option("--messages", o->messages,
                  "JSON file with a list of {\"role\", \"content\"} messages");
  cmd->add_option("--template", o->chat_template,
                  "Chat template: a name (chatml, llama3, ...; see ft train --help) or a .jinja "
                  "file (default: the adapter's, else the tokenizer's)");
  cmd->add_flag("--raw", o->raw, "Use the prompt as it is, without the chat template");
  cmd->add_option("--max-tokens", o->gen.max_tokens, "Most tokens to generate")
      ->capture_default_str();
  cmd->add_option("--temperature", s.temperature, "Sampling temperature; 0 is greedy")
      ->capture_default_str();
  cmd->add_option("--top-p", s.top_p, "Nucleus sampling mass; 1 is off")->capture_default_str();
  cmd->add_option("--top-k", s.top_k, "Keep the k likeliest tokens; 0 is off")
      ->capture_default_str();
  cmd->add_option("--min-p", s.min_p, "Drop tokens below min-p times the top probability")
      ->capture_default_str();
  cmd->add_option("--repetition-penalty", s.repetition_penalty,
                  "Penalty for tokens already in the prompt or output; 1 is off")
      ->capture_default_str();
  add_seed_option(cmd, o->gen.seed, "the sampling");
  cmd->add_option("--stop", o->gen.stop, "Stop when the text contains this (repeatable)")
      ->allow_extra_args(false);
  add_dtype_option(cmd, o->dtype, "the weights")->capture_default_str();
  add_base_quantization_options(cmd, o->quantization);
  cmd->add_flag(
      "--json", o->as_json,
      "Print one JSON object {\"ids\", \"text\", \"finish_reason\"} instead of streaming");
  cmd->callback([o] { run_generate(*o); });
}

}  // namespace ft::cli
