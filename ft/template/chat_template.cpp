#include "ft/template/chat_template.h"

#include <algorithm>
#include <fstream>
#include <sstream>

#include "ft/core/error.h"
#include "ft/template/ast.h"
#include "ft/template/interpreter.h"
#include "ft/template/named_templates.h"

namespace ft::chat {

namespace fs = std::filesystem;

namespace {

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  FT_CHECK(in, "chat_template", path.string(), ": cannot open");
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

nlohmann::ordered_json read_json(const fs::path& path) {
  try {
    return nlohmann::ordered_json::parse(read_file(path));
  } catch (const nlohmann::ordered_json::exception& e) {
    throw Error("chat_template", path.string() + ": not valid JSON: " + e.what());
  }
}

// transformers' named special tokens; tokenizer_config.json may also add
// model-specific ones under "extra_special_tokens" (a dict).
const char* const special_token_names[] = {"bos_token", "eos_token", "unk_token", "sep_token",
                                           "pad_token", "cls_token", "mask_token"};

// A token entry is a string or an AddedToken dict {"content": ...}.
std::optional<std::string> token_text(const nlohmann::ordered_json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string())
    return v["content"].get<std::string>();
  return std::nullopt;
}

void add_special_tokens(const nlohmann::ordered_json& config, nlohmann::ordered_json& vars,
                        bool only_missing) {
  if (!config.is_object()) return;
  for (const char* name : special_token_names)
    if (config.contains(name) && !(only_missing && vars.contains(name)))
      if (auto text = token_text(config[name])) vars[name] = *text;
  if (config.contains("extra_special_tokens") && config["extra_special_tokens"].is_object())
    for (const auto& [name, value] : config["extra_special_tokens"].items())
      if (!(only_missing && vars.contains(name)))
        if (auto text = token_text(value)) vars[name] = *text;
}

std::shared_ptr<const jinja::Body> compile(const std::string& source, const std::string& what) {
  try {
    return std::make_shared<const jinja::Body>(jinja::parse(source));
  } catch (const Error& e) {
    throw Error("chat_template", what + ": " + e.fact());
  }
}

}  // namespace

ChatTemplate ChatTemplate::from_string(const std::string& source,
                                       nlohmann::ordered_json variables) {
  FT_CHECK(variables.is_object(), "chat_template", "variables must be a JSON object");
  ChatTemplate t;
  t.templates_.push_back({"default", source, compile(source, "template")});
  t.variables_ = std::move(variables);
  return t;
}

ChatTemplate ChatTemplate::from_spec(const std::string& spec, nlohmann::ordered_json variables) {
  if (const std::optional<std::string> source = named_template_source(spec))
    return from_string(*source, std::move(variables));
  std::error_code ec;
  if (fs::path(spec).extension() == ".jinja" || fs::is_regular_file(spec, ec)) {
    FT_CHECK(fs::is_regular_file(spec, ec), "chat_template", spec, ": no such template file");
    ChatTemplate t;
    t.templates_.push_back({"default", read_file(spec), nullptr});
    t.templates_[0].body = compile(t.templates_[0].source, spec);
    t.variables_ = std::move(variables);
    return t;
  }
  std::string known;
  for (const std::string& name : named_template_names())
    known += (known.empty() ? "" : ", ") + name;
  throw Error("chat_template",
              "unknown template '" + spec + "' (known: " + known + "; or give a .jinja file)");
}

nlohmann::ordered_json ChatTemplate::special_tokens(const nlohmann::ordered_json& tokenizer_config,
                                                    const fs::path& dir) {
  nlohmann::ordered_json vars = nlohmann::ordered_json::object();
  add_special_tokens(tokenizer_config, vars, false);
  if (!dir.empty() && fs::exists(dir / "special_tokens_map.json"))
    add_special_tokens(read_json(dir / "special_tokens_map.json"), vars, true);
  return vars;
}

std::optional<ChatTemplate> ChatTemplate::from_tokenizer_dir_if_any(const fs::path& dir) {
  bool has = fs::exists(dir / "chat_template.jinja") ||
             fs::is_directory(dir / "additional_chat_templates");
  if (!has && fs::exists(dir / "tokenizer_config.json")) {
    const nlohmann::ordered_json config = read_json(dir / "tokenizer_config.json");
    has = config.is_object() && config.contains("chat_template") &&
          !config["chat_template"].is_null();
  }
  if (!has) return std::nullopt;
  return from_tokenizer_dir(dir);
}

ChatTemplate ChatTemplate::from_tokenizer_dir(const fs::path& dir, const std::string& name) {
  ChatTemplate t;
  fs::path config_path = dir / "tokenizer_config.json";
  nlohmann::ordered_json config =
      fs::exists(config_path) ? read_json(config_path) : nlohmann::ordered_json::object();
  FT_CHECK(config.is_object(), "chat_template", config_path.string(), ": expected a JSON object");

  std::vector<std::pair<std::string, std::string>> sources;  // (name, source)
  if (fs::exists(dir / "chat_template.jinja"))
    sources.emplace_back("default", read_file(dir / "chat_template.jinja"));
  if (fs::is_directory(dir / "additional_chat_templates")) {
    std::vector<fs::path> files;
    for (const auto& entry : fs::directory_iterator(dir / "additional_chat_templates"))
      if (entry.path().extension() == ".jinja") files.push_back(entry.path());
    std::sort(files.begin(), files.end());
    for (const auto& f : files) sources.emplace_back(f.stem().string(), read_file(f));
  }
  if (sources.empty() && config.contains("chat_template")) {
    const auto& ct = config["chat_template"];
    if (ct.is_string()) {
      sources.emplace_back("default", ct.get<std::string>());
    } else if (ct.is_array()) {
      for (const auto& entry : ct) {
        FT_CHECK(
            entry.is_object() && entry.contains("name") && entry["name"].is_string() &&
                entry.contains("template") && entry["template"].is_string(),
            "chat_template", config_path.string(),
            ": each entry of 'chat_template' must be {\"name\": string, \"template\": string}");
        sources.emplace_back(entry["name"].get<std::string>(),
                             entry["template"].get<std::string>());
      }
    } else if (!ct.is_null()) {
      throw Error("chat_template",
                  config_path.string() + ": 'chat_template' must be a string or a list");
    }
  }
  FT_CHECK(!sources.empty(), "chat_template", dir.string(),
           ": no chat template (no chat_template.jinja, and tokenizer_config.json has no "
           "'chat_template')");
  for (auto& [template_name, source] : sources)
    t.templates_.push_back(
        {template_name, source, compile(source, template_name + " template of " + dir.string())});
  if (!name.empty()) {
    bool found = std::any_of(t.templates_.begin(), t.templates_.end(),
                             [&](const Template& x) { return x.name == name; });
    if (!found) {
      std::string known;
      for (const auto& n : t.names()) known += (known.empty() ? "" : ", ") + n;
      throw Error("chat_template",
                  dir.string() + ": no chat template named '" + name + "' (have: " + known + ")");
    }
    t.chosen_ = name;
  }

  t.variables_ = special_tokens(config, dir);
  return t;
}

std::vector<std::string> ChatTemplate::names() const {
  std::vector<std::string> out;
  for (const auto& t : templates_)
    if (t.name == "default")
      out.insert(out.begin(), t.name);
    else
      out.push_back(t.name);
  return out;
}

const ChatTemplate::Template& ChatTemplate::pick(bool with_tools) const {
  auto find = [&](const std::string& name) -> const Template* {
    for (const auto& t : templates_)
      if (t.name == name) return &t;
    return nullptr;
  };
  if (!chosen_.empty()) return *find(chosen_);
  if (templates_.size() == 1) return templates_[0];
  if (with_tools)
    if (const Template* t = find("tool_use")) return *t;
  if (const Template* t = find("default")) return *t;
  throw Error("chat_template",
              "several chat templates and none named 'default'; choose one of them by name");
}

const std::string& ChatTemplate::source(bool with_tools) const {
  return pick(with_tools).source;
}

std::string ChatTemplate::render(const nlohmann::ordered_json& messages,
                                 const RenderOptions& options) const {
  FT_CHECK(messages.is_array(), "chat_template", "messages must be a JSON list");
  FT_CHECK(options.variables.is_object(), "chat_template", "variables must be a JSON object");
  const Template& t = pick(!options.tools.is_null());

  // As apply_chat_template: keys whose value is null are dropped, and a message's
  // reasoning under any of its names is also given as "thinking" and "reasoning_content".
  jinja::List chat;
  for (size_t i = 0; i < messages.size(); ++i) {
    const auto& m = messages[i];
    FT_CHECK(m.is_object(), "chat_template", "message ", i, " is not a JSON object");
    jinja::Dict fields;
    for (const auto& [k, v] : m.items())
      if (!v.is_null()) fields.emplace_back(k, jinja::Value::from_json(v));
    jinja::Value message = jinja::Value::dict(std::move(fields));
    for (const char* key : {"reasoning_content", "thinking", "reasoning"}) {
      if (jinja::Value* reasoning = message.find(key)) {
        jinja::Value r = *reasoning;
        jinja::Dict aliased{{"thinking", r}};
        for (const auto& [k, v] : message.as_dict())
          if (k != "thinking") aliased.emplace_back(k, v);
        message = jinja::Value::dict(std::move(aliased));
        message.set("reasoning_content", r);
        break;
      }
    }
    chat.push_back(std::move(message));
  }

  jinja::Value vars = jinja::Value::dict();
  for (const auto& [k, v] : variables_.items()) vars.set(k, jinja::Value::from_json(v));
  for (const auto& [k, v] : options.variables.items()) vars.set(k, jinja::Value::from_json(v));
  vars.set("messages", jinja::Value::list(std::move(chat)));
  vars.set("tools", jinja::Value::from_json(options.tools));
  vars.set("documents", jinja::Value::from_json(options.documents));
  vars.set("add_generation_prompt", jinja::Value(options.add_generation_prompt));
  jinja::Interpreter interpreter;
  return interpreter.render(*t.body, vars);
}

}  // namespace ft::chat
