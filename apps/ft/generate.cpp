// ft generate: text from a model folder (optionally with a LoRA adapter) for a prompt
// or a chat, streamed as it is generated or printed as one JSON object.
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <regex>
#include <set>

#include <mlx/ops.h>
#include <nlohmann/json.hpp>

#include "apps/ft/commands.h"
#include "ft/core/error.h"
#include "ft/core/param_map.h"
#include "ft/generate/generate.h"
#include "ft/models/registry.h"
#include "ft/nn/lora.h"
#include "ft/template/chat_template.h"
#include "ft/tokenizer/tokenizer.h"

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
  bool raw = false;
  std::string dtype = "float32";
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

// Whether a tokenizer folder carries a chat template (the places ChatTemplate reads).
bool has_chat_template(const fs::path& dir) {
  if (fs::exists(dir / "chat_template.jinja")) return true;
  fs::path config = dir / "tokenizer_config.json";
  return fs::exists(config) && read_json_file(config).contains("chat_template");
}

// Adapter weights under ft's names and shapes (LoRALinear's lora_A (r, in), lora_B
// (out, r), lora_magnitude (out,)) from the PEFT layout (base_model.model.<path>.lora_A.weight)
// or the mlx-lm layout (<path>.lora_a (in, r), <path>.lora_b (r, out), <path>.m).
ParamMap normalize_adapter_weights(const ParamMap& raw) {
  ParamMap out;
  for (const auto& [name, value] : raw) {
    std::string n = name;
    if (n.starts_with("base_model.model.")) n = n.substr(17);
    auto replace_end = [&n](const std::string& from, const std::string& to) {
      if (!n.ends_with(from)) return false;
      n = n.substr(0, n.size() - from.size()) + to;
      return true;
    };
    if (replace_end(".lora_A.weight", ".lora_A") || replace_end(".lora_B.weight", ".lora_B") ||
        replace_end(".lora_magnitude_vector.weight", ".lora_magnitude") ||
        replace_end(".lora_magnitude_vector", ".lora_magnitude") || n.ends_with(".lora_A") ||
        n.ends_with(".lora_B") || n.ends_with(".lora_magnitude")) {
      out.set(n, value);
    } else if (replace_end(".lora_a", ".lora_A") || replace_end(".lora_b", ".lora_B")) {
      out.set(n, mx::transpose(value));
    } else if (replace_end(".m", ".lora_magnitude")) {
      out.set(n, value);
    } else {
      throw Error("generate", "adapter tensor '" + name + "' is not a LoRA or DoRA weight");
    }
  }
  return out;
}

// Puts the adapter of `dir` into the model. The adapted modules and the rank come from
// the weights themselves; adapter_config.json gives the scale (PEFT's lora_alpha or
// mlx-lm's lora_parameters.scale), rsLoRA and DoRA.
void load_adapter(models::LlamaForCausalLM& model, const fs::path& dir) {
  fs::path weights_file = dir / "adapters.safetensors";
  if (!fs::exists(weights_file)) weights_file = dir / "adapter_model.safetensors";
  FT_CHECK(fs::exists(weights_file), "generate", dir.string(),
           ": no adapters.safetensors or adapter_model.safetensors");
  nlohmann::ordered_json config = read_json_file(dir / "adapter_config.json");
  ParamMap weights = normalize_adapter_weights(ParamMap::load_safetensors(weights_file.string()));

  std::set<std::string> paths;
  int rank = 0;
  for (const auto& [name, value] : weights)
    if (name.ends_with(".lora_A")) {
      paths.insert(name.substr(0, name.size() - 7));
      rank = value.shape(0);
    }
  FT_CHECK(!paths.empty(), "generate", weights_file.string(), ": no lora_A weights");

  std::set<std::string> modules;
  for (const auto& [path, module] : model.named_modules()) modules.insert(path);
  std::string missing;
  for (const std::string& path : paths)
    if (!modules.count(path)) missing += (missing.empty() ? "" : ", ") + path;
  FT_CHECK(missing.empty(), "generate", weights_file.string(),
           ": adapts modules the model does not have (an adapter for another model?): ", missing);

  nn::LoraConfig lora;
  lora.rank = rank;
  lora.dtype = model.output_weight().dtype();
  if (config.contains("lora_parameters")) {  // mlx-lm: y = base + scale * (x a) b
    const auto& p = config["lora_parameters"];
    lora.alpha = p.value("scale", 20.0f) * rank;
    lora.dora = config.value("fine_tune_type", "lora") == "dora";
  } else {  // PEFT
    lora.alpha = config.value("lora_alpha", 8.0f);
    lora.rslora = config.value("use_rslora", false);
    lora.dora = config.value("use_dora", false);
  }
  std::string regex;
  for (const std::string& path : paths)
    regex += (regex.empty() ? "" : "|") + std::regex_replace(path, std::regex("\\."), "\\.");
  lora.target_regex = "^(" + regex + ")$";
  auto replaced = nn::apply_lora(model, lora);
  FT_CHECK(replaced.size() == paths.size(), "generate", weights_file.string(), ": adapts ",
           paths.size(), " modules, of which only ", replaced.size(), " are linear layers");
  // Adapters saved in float32 load into a model of another dtype.
  ParamMap cast;
  for (const auto& [name, value] : weights) cast.set(name, mx::astype(value, lora.dtype));
  model.load(cast, false);
}

mx::Dtype parse_dtype(const std::string& name) {
  if (name == "float32") return mx::float32;
  if (name == "bfloat16") return mx::bfloat16;
  if (name == "float16") return mx::float16;
  throw Error("generate", "unknown dtype '" + name + "' (known: float32, bfloat16, float16)");
}

void run_generate(GenerateCliOptions o) {
  FT_CHECK(o.prompt.empty() != o.messages.empty(), "generate",
           "give exactly one of --prompt and --messages");
  fs::path tokenizer_dir = o.tokenizer.empty() ? fs::path(o.model) : fs::path(o.tokenizer);
  auto tokenizer = tokenizer::Tokenizer::from_dir(tokenizer_dir);
  auto model = models::load_model(o.model, parse_dtype(o.dtype));
  if (!o.adapter.empty()) load_adapter(*model, o.adapter);
  model->eval();

  std::vector<int> prompt;
  if (!o.raw && has_chat_template(tokenizer_dir)) {
    nlohmann::ordered_json messages;
    if (!o.messages.empty()) {
      messages = read_json_file(o.messages);
      if (messages.is_object() && messages.contains("messages")) messages = messages["messages"];
      FT_CHECK(messages.is_array(), "generate", o.messages,
               ": expected a list of messages or an object with \"messages\"");
    } else {
      messages = nlohmann::ordered_json::array({{{"role", "user"}, {"content", o.prompt}}});
    }
    auto chat = chat::ChatTemplate::from_tokenizer_dir(tokenizer_dir);
    // The template writes the special tokens itself, as apply_chat_template does.
    chat::RenderOptions render;
    render.add_generation_prompt = true;
    prompt = tokenizer.encode(chat.render(messages, render), false);
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
  cmd->add_option("model", o->model, "Model folder (config.json, weights, tokenizer files)")
      ->required();
  cmd->add_option("--adapter", o->adapter,
                  "LoRA/DoRA adapter folder: adapters.safetensors (mlx-lm) or "
                  "adapter_model.safetensors (PEFT), with adapter_config.json");
  cmd->add_option("--tokenizer", o->tokenizer, "Tokenizer folder (default: the model folder)");
  cmd->add_option("--prompt", o->prompt, "The prompt (a user message unless --raw)");
  cmd->add_option("--messages", o->messages,
                  "JSON file with a list of {\"role\", \"content\"} messages");
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
  cmd->add_option("--seed", o->gen.seed, "Seed of the sampling")->capture_default_str();
  cmd->add_option("--stop", o->gen.stop, "Stop when the text contains this (repeatable)")
      ->allow_extra_args(false);
  cmd->add_option("--dtype", o->dtype, "Weights dtype: float32, bfloat16 or float16")
      ->capture_default_str();
  cmd->add_flag(
      "--json", o->as_json,
      "Print one JSON object {\"ids\", \"text\", \"finish_reason\"} instead of streaming");
  cmd->callback([o] { run_generate(*o); });
}

}  // namespace ft::cli
