#include "ft/io/adapters.h"

#include <unistd.h>  // defines: getpid, for names of temporary folders

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <functional>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <type_traits>

#include <nlohmann/json.hpp>

#include <mlx/ops.h>

#include "ft/core/error.h"
#include "ft/nn/experts.h"  // defines: ExpertWeights

namespace ft::io {
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

constexpr const char* kPlace = "adapter";
const std::string kPeftPrefix = "base_model.model.";

// Every LoRA/DoRA wrapper under model, by path.
std::vector<std::pair<std::string, const nn::LoRALinear*>> wrappers(const nn::Module& model) {
  std::vector<std::pair<std::string, const nn::LoRALinear*>> out;
  for (const auto& [path, module] : model.named_modules())
    if (auto* w = dynamic_cast<const nn::LoRALinear*>(module)) out.emplace_back(path, w);
  return out;
}

// Every ExpertLoRA under model, by the path of the parameter it adapts.
std::vector<std::pair<std::string, const nn::ExpertLoRA*>> expert_adapters(
    const nn::Module& model) {
  std::vector<std::pair<std::string, const nn::ExpertLoRA*>> out;
  for (const auto& [path, module] : model.named_modules())
    if (auto* e = dynamic_cast<const nn::ExpertLoRA*>(module)) out.emplace_back(path, e);
  return out;
}

// "a.b.c" -> {"a.b", "c"}.
std::pair<std::string, std::string> split_last(const std::string& path) {
  const size_t dot = path.rfind('.');
  if (dot == std::string::npos) return {"", path};
  return {path.substr(0, dot), path.substr(dot + 1)};
}

// The ExpertWeights at path in model, or null.
const nn::ExpertWeights* host_at(const nn::Module& model, const std::string& path) {
  return dynamic_cast<const nn::ExpertWeights*>(model.find_module(path).get());
}

// "model.layers.12.self_attn.q_proj" -> 12 and "self_attn.q_proj"; -1 off the layers.
std::pair<int, std::string> split_layer(const std::string& path) {
  static const std::regex re(R"(^model\.layers\.(\d+)\.(.+)$)");
  std::smatch m;
  if (!std::regex_match(path, m, re)) return {-1, ""};
  return {std::stoi(m[1].str()), m[2].str()};
}

std::string escape_regex(const std::string& s) {
  static const std::string special = R"(\^$.|?*+()[]{})";
  std::string out;
  for (char c : s) {
    if (special.find(c) != std::string::npos) out += '\\';
    out += c;
  }
  return out;
}

// A regex that matches exactly these paths (std::regex_search with anchors; PEFT's
// re.fullmatch accepts it too).
std::string exact_regex(const std::vector<std::string>& paths) {
  std::string re = "^(";
  for (size_t i = 0; i < paths.size(); ++i) {
    if (i > 0) re += '|';
    re += escape_regex(paths[i]);
  }
  re += ")$";
  return re;
}

void write_json(const fs::path& file, const json& value) {
  std::ofstream f(file, std::ios::binary);
  f << value.dump(2) << "\n";
  f.close();
  FT_CHECK(f, kPlace, file.string(), ": cannot write");
}

// ".<name><kind><tag>", a hidden sibling of out_dir.
fs::path sibling(const fs::path& parent, const fs::path& out_dir, const char* kind,
                 const std::string& tag) {
  std::string name = ".";
  name += out_dir.filename().string();
  name += kind;
  name += tag;
  return parent / name;
}

// Builds out_dir through fill(tmp) in a sibling folder renamed into place at the end.
void write_folder_atomically(const fs::path& out_dir,
                             const std::function<void(const fs::path&)>& fill) {
  FT_CHECK(!out_dir.filename().empty(), kPlace, out_dir.string(),
           ": the output needs a folder name");
  std::error_code ec;
  const fs::path parent = out_dir.parent_path().empty() ? fs::path(".") : out_dir.parent_path();
  fs::create_directories(parent, ec);
  FT_CHECK(!ec, kPlace, out_dir.string(), ": cannot create ", parent.string(), ": ", ec.message());
  FT_CHECK(!fs::exists(out_dir, ec) || fs::is_directory(out_dir, ec), kPlace, out_dir.string(),
           ": exists and is not a folder");
  const std::string tag = std::to_string(getpid());
  const fs::path tmp = sibling(parent, out_dir, ".partial-", tag);
  fs::remove_all(tmp, ec);
  fs::create_directory(tmp, ec);
  FT_CHECK(!ec, kPlace, out_dir.string(), ": cannot write in ", parent.string(), ": ",
           ec.message());
  try {
    fill(tmp);
    const fs::path old = sibling(parent, out_dir, ".old-", tag);
    const bool replace = fs::exists(out_dir, ec);
    if (replace) {
      fs::remove_all(old, ec);
      fs::rename(out_dir, old, ec);
      FT_CHECK(!ec, kPlace, out_dir.string(), ": cannot replace: ", ec.message());
    }
    fs::rename(tmp, out_dir, ec);
    FT_CHECK(!ec, kPlace, out_dir.string(), ": cannot rename into place: ", ec.message());
    if (replace) fs::remove_all(old, ec);
  } catch (...) {
    fs::remove_all(tmp, ec);
    throw;
  }
}

struct Collected {
  std::vector<std::string> paths;    // LoRA/DoRA wrappers, in named_modules order
  std::vector<std::string> stacked;  // ExpertLoRA parameters, in named_modules order
  int rank = 0;                      // per expert for an ExpertLoRA
  bool dora = false;
};

Collected collect(const nn::Module& model, const nn::LoraConfig& config) {
  Collected c;
  auto take_rank = [&](int rank) {
    FT_CHECK(c.rank == 0 || c.rank == rank, kPlace, "adapters of ranks ", c.rank, " and ", rank,
             " in one model cannot be saved with one rank");
    c.rank = rank;
  };
  for (const auto& [path, w] : wrappers(model)) {
    take_rank(w->rank());
    c.dora = c.dora || dynamic_cast<const nn::DoRALinear*>(w) != nullptr;
    c.paths.push_back(path);
  }
  for (const auto& [path, e] : expert_adapters(model)) {
    take_rank(e->rank());
    c.stacked.push_back(path);
  }
  FT_CHECK(!c.paths.empty() || !c.stacked.empty(), kPlace,
           "the model has no LoRA or DoRA layers to save");
  FT_CHECK(c.dora == config.dora, kPlace, "the config says dora = ", config.dora,
           " but the model's adapters say otherwise");
  return c;
}

// Note [PEFT's names for stacked parameters]
// PEFT wraps a module once per targeted parameter (ParamWrapper), in the order the module
// holds its parameters, the first innermost; each wrapper's adapter sits beside its
// base_layer. With gate_up_proj and down_proj both adapted, the experts' tensors are
//   <experts>.base_layer.lora_A.weight   gate_up_proj (inner)
//   <experts>.lora_A.weight              down_proj (outer)
// and with only one of them, <experts>.lora_A.weight.

// PEFT's module name (without "base_model.model.") for each stacked parameter path.
std::map<std::string, std::string> peft_stacked_modules(const nn::Module& model,
                                                        const std::vector<std::string>& stacked) {
  const std::set<std::string> adapted(stacked.begin(), stacked.end());
  std::map<std::string, std::string> out;
  for (const auto& path : stacked) {
    const auto [host_path, parameter] = split_last(path);
    const nn::ExpertWeights* host = host_at(model, host_path);
    FT_ASSERT(host != nullptr);
    std::vector<std::string> wrapped;  // innermost first
    for (const auto& p : host->stacked_names())
      if (adapted.contains(host_path + "." + p)) wrapped.push_back(p);
    const auto it = std::find(wrapped.begin(), wrapped.end(), parameter);
    FT_ASSERT(it != wrapped.end());
    std::string module = host_path;
    for (auto depth = wrapped.end() - it - 1; depth > 0; --depth) module += ".base_layer";
    out[path] = module;
  }
  return out;
}

float lora_scale(const nn::LoraConfig& config, int rank) {
  return config.rslora ? config.alpha / std::sqrt(static_cast<float>(rank))
                       : config.alpha / static_cast<float>(rank);
}

json read_json(const fs::path& file) {
  std::ifstream f(file, std::ios::binary);
  FT_CHECK(f, kPlace, file.string(), ": cannot open");
  try {
    return json::parse(f);
  } catch (const json::exception& e) {
    throw Error(kPlace, file.string() + ": not valid JSON: " + e.what());
  }
}

// A value as the error shows it: the JSON, cut short.
std::string shown(const json& v) {
  std::string text = v.dump();
  return text.size() > 60 ? text.substr(0, 57) + "..." : text;
}

// A field of type T; numbers must be numbers (a bool is not 1), and an integer must be
// an integer within int's range (a float converted to int past it is undefined).
template <typename T>
T field(const json& j, const char* key, const fs::path& file) {
  FT_CHECK(j.contains(key) && !j[key].is_null(), kPlace, file.string(), ": missing '", key, "'");
  const json& v = j[key];
  auto within_int = [&] {
    if (v.is_number_unsigned()) return v.get<uint64_t>() <= uint64_t(INT32_MAX);
    return v.is_number_integer() && v.get<int64_t>() >= INT32_MIN && v.get<int64_t>() <= INT32_MAX;
  };
  const bool wrong_number =
      (std::is_arithmetic_v<T> && !std::is_same_v<T, bool> && !v.is_number()) ||
      (std::is_integral_v<T> && !std::is_same_v<T, bool> && !within_int());
  FT_CHECK(!wrong_number, kPlace, file.string(), ": '", key, "' must be ",
           std::is_integral_v<T> ? "an integer within int's range" : "a number", ", got ",
           shown(v));
  try {
    return v.get<T>();
  } catch (const json::exception&) {
    throw Error(kPlace, file.string() + ": '" + key + "' has the wrong type: " + shown(v));
  }
}

// An optional field: fallback when absent or null.
template <typename T>
T field(const json& j, const char* key, const fs::path& file, const T& fallback) {
  return j.contains(key) && !j[key].is_null() ? field<T>(j, key, file) : fallback;
}

// The adapter's scaling settings, named with the file and the field: the rank
// (1 to 2^16), a finite positive alpha (scale for mlx-lm) and a dropout in [0, 1).
void check_lora_settings(const nn::LoraConfig& c, const fs::path& file, const char* rank_key) {
  FT_CHECK(c.rank > 0 && c.rank <= (1 << 16), kPlace, file.string(), ": '", rank_key,
           "' must be between 1 and 65536, got ", c.rank);
  FT_CHECK(std::isfinite(c.alpha) && c.alpha > 0, kPlace, file.string(),
           ": the scale (alpha / rank) must be finite and positive, got alpha ", c.alpha);
  FT_CHECK(c.dropout >= 0 && c.dropout < 1, kPlace, file.string(),
           ": the dropout must be in [0, 1), got ", c.dropout);
}

// Drops PEFT's "base_layer" components from a module name and counts them.
std::pair<std::string, int> strip_base_layers(const std::string& module) {
  std::string out;
  int depth = 0;
  std::stringstream parts(module);
  for (std::string part; std::getline(parts, part, '.');) {
    if (part == "base_layer") {
      ++depth;
      continue;
    }
    out += (out.empty() ? "" : ".") + part;
  }
  return {out, depth};
}

// The stacked parameters target_parameters selects on module, by PEFT's rule (the key
// "<module>.<parameter>" equals an entry or ends with "." + it), in the order PEFT nests
// them: the model's when given (see Note [PEFT's names for stacked parameters]), else the
// order the entries are listed in.
std::vector<std::string> targeted_parameters(const std::string& module,
                                             const std::vector<std::string>& targets,
                                             const nn::Module* model) {
  std::vector<std::string> listed;
  for (const auto& target : targets) {
    const std::string parameter = split_last(target).second;
    const std::string key = module + "." + parameter;
    const bool match = key == target || (key.size() > target.size() + 1 && key.ends_with(target) &&
                                         key[key.size() - target.size() - 1] == '.');
    if (match && std::find(listed.begin(), listed.end(), parameter) == listed.end())
      listed.push_back(parameter);
  }
  if (!model || listed.empty()) return listed;
  const nn::ExpertWeights* host = host_at(*model, module);
  if (!host) return {};
  std::vector<std::string> ordered;
  for (const auto& p : host->stacked_names())
    if (std::find(listed.begin(), listed.end(), p) != listed.end()) ordered.push_back(p);
  return ordered;
}

Adapter read_peft(const fs::path& dir, const nn::Module* model, const ModulePrefix& prefix) {
  const fs::path config_file = dir / "adapter_config.json";
  const fs::path weights_file = dir / "adapter_model.safetensors";
  json j = read_json(config_file);
  FT_CHECK(j.is_object(), kPlace, config_file.string(), ": not a JSON object");
  Adapter a;
  a.format = AdapterFormat::peft;
  const auto type = field<std::string>(j, "peft_type", config_file);
  FT_CHECK(type == "LORA", kPlace, config_file.string(), ": peft_type ", type,
           " is not supported (only LORA)");
  for (const char* key : {"rank_pattern", "alpha_pattern"})
    FT_CHECK(!j.contains(key) || j[key].is_null() || j[key].empty(), kPlace, config_file.string(),
             ": ", key, " is not supported");
  FT_CHECK(field<std::string>(j, "bias", config_file, "none") == "none", kPlace,
           config_file.string(), ": bias other than \"none\" is not supported");
  FT_CHECK(!field<bool>(j, "lora_bias", config_file, false), kPlace, config_file.string(),
           ": lora_bias is not supported");
  // fan_in_fan_out says the base weights are stored (in, out) (GPT-2's Conv1D); the
  // adapters' shapes are the same either way, and ft's Linear knows its own storage.
  a.config.rank = field<int>(j, "r", config_file);
  a.config.alpha = field<float>(j, "lora_alpha", config_file);
  a.config.dropout = field<float>(j, "lora_dropout", config_file, 0.0f);
  a.config.rslora = field<bool>(j, "use_rslora", config_file, false);
  a.config.dora = field<bool>(j, "use_dora", config_file, false);
  check_lora_settings(a.config, config_file, "r");
  if (j.contains("base_model_name_or_path") && j["base_model_name_or_path"].is_string())
    a.base_model_name_or_path = j["base_model_name_or_path"].get<std::string>();
  std::vector<std::string> target_parameters;
  if (j.contains("target_parameters") && !j["target_parameters"].is_null())
    target_parameters = field<std::vector<std::string>>(j, "target_parameters", config_file);
  for (auto& t : target_parameters) t = prefix.to_ours(t);

  // (module, wrapper depth) -> the tensors of one stacked adapter, resolved below.
  std::map<std::pair<std::string, int>, std::vector<std::pair<std::string, mx::array>>> wrapped;
  ParamMap raw = ParamMap::load_safetensors(weights_file.string());
  for (const auto& [name, value] : raw) {
    FT_CHECK(name.rfind(kPeftPrefix, 0) == 0, kPlace, weights_file.string(), ": tensor '", name,
             "' does not start with '", kPeftPrefix, "'");
    std::string rest = name.substr(kPeftPrefix.size());
    static const std::vector<std::pair<std::string, std::string>> suffixes = {
        {".lora_A.weight", "lora_A"},
        {".lora_B.weight", "lora_B"},
        {".lora_magnitude_vector", "lora_magnitude"}};
    bool known = false;
    for (const auto& [suffix, ours] : suffixes) {
      if (rest.size() > suffix.size() &&
          rest.compare(rest.size() - suffix.size(), suffix.size(), suffix) == 0) {
        const std::string module = prefix.to_ours(rest.substr(0, rest.size() - suffix.size()));
        if (!target_parameters.empty()) {
          auto [unwrapped, depth] = strip_base_layers(module);
          if (!targeted_parameters(unwrapped, target_parameters, model).empty()) {
            wrapped[{unwrapped, depth}].emplace_back(ours, value);
            known = true;
            break;
          }
        }
        a.weights.set(module + "." + ours, value);
        known = true;
        break;
      }
    }
    FT_CHECK(known, kPlace, weights_file.string(), ": tensor '", name,
             "' is not a LoRA or DoRA tensor");
  }
  // See Note [PEFT's names for stacked parameters]: depth d of n wrappers is the
  // (n - 1 - d)-th targeted parameter.
  for (const auto& [key, tensors] : wrapped) {
    const auto& [module, depth] = key;
    const auto parameters = targeted_parameters(module, target_parameters, model);
    const int n = static_cast<int>(parameters.size());
    int deepest = 0;
    for (const auto& [other, unused] : wrapped)
      if (other.first == module) deepest = std::max(deepest, other.second);
    FT_CHECK(deepest + 1 == n, kPlace, weights_file.string(), ": target_parameters selects ", n,
             " parameter", n == 1 ? "" : "s", " of '", module, "' but the file wraps it ",
             deepest + 1, " time", deepest == 0 ? "" : "s");
    const std::string path = module + "." + parameters[n - 1 - depth];
    for (const auto& [ours, value] : tensors) a.weights.set(path + "." + ours, value);
    a.stacked.push_back(path);
  }
  std::sort(a.stacked.begin(), a.stacked.end());
  return a;
}

Adapter read_mlx_lm(const fs::path& dir) {
  const fs::path config_file = dir / "adapter_config.json";
  const fs::path weights_file = dir / "adapters.safetensors";
  json j = read_json(config_file);
  FT_CHECK(j.is_object(), kPlace, config_file.string(), ": not a JSON object");
  Adapter a;
  a.format = AdapterFormat::mlx_lm;
  const auto type = field<std::string>(j, "fine_tune_type", config_file, "lora");
  FT_CHECK(type == "lora" || type == "dora", kPlace, config_file.string(), ": fine_tune_type ",
           type, " is not supported (lora or dora)");
  a.config.dora = type == "dora";
  FT_CHECK(j.contains("lora_parameters") && j["lora_parameters"].is_object(), kPlace,
           config_file.string(), ": missing 'lora_parameters'");
  const json& p = j["lora_parameters"];
  a.config.rank = field<int>(p, "rank", config_file);
  FT_CHECK(a.config.rank > 0, kPlace, config_file.string(), ": rank must be positive");
  // mlx-lm stores the product alpha / r directly.
  a.config.alpha = field<float>(p, "scale", config_file) * static_cast<float>(a.config.rank);
  a.config.dropout = field<float>(p, "dropout", config_file, 0.0f);
  check_lora_settings(a.config, config_file, "rank");

  ParamMap raw = ParamMap::load_safetensors(weights_file.string());
  for (const auto& [name, value] : raw) {
    const size_t dot = name.rfind('.');
    const std::string leaf = dot == std::string::npos ? name : name.substr(dot + 1);
    const std::string module = dot == std::string::npos ? "" : name.substr(0, dot);
    FT_CHECK(!module.empty() && (leaf == "lora_a" || leaf == "lora_b" || leaf == "m"), kPlace,
             weights_file.string(), ": tensor '", name, "' is not a LoRA or DoRA tensor");
    if (leaf == "m") {
      a.weights.set(module + ".lora_magnitude", value);
    } else {
      FT_CHECK(value.ndim() == 2, kPlace, weights_file.string(), ": tensor '", name,
               "' is not a matrix");
      a.weights.set(module + (leaf == "lora_a" ? ".lora_A" : ".lora_B"), mx::transpose(value));
    }
  }
  return a;
}

}  // namespace

std::string ModulePrefix::to_theirs(const std::string& path) const {
  if (ours == theirs || !path.starts_with(ours)) return path;
  return theirs + path.substr(ours.size());
}

std::string ModulePrefix::to_ours(const std::string& path) const {
  if (ours == theirs || !path.starts_with(theirs)) return path;
  return ours + path.substr(theirs.size());
}

ParamMap adapter_parameters(const nn::Module& model) {
  ParamMap all = model.parameters();
  ParamMap out;
  for (const auto& [path, module] : model.named_modules()) {
    std::vector<std::string> names;
    if (auto* w = dynamic_cast<const nn::LoRALinear*>(module)) names = w->adapter_names();
    if (auto* e = dynamic_cast<const nn::ExpertLoRA*>(module)) names = e->adapter_names();
    for (const auto& name : names) {
      const std::string full = path + "." + name;
      out.set(full, all.at(full));
    }
  }
  return out;
}

void save_peft_adapter(const nn::Module& model, const nn::LoraConfig& config,
                       const std::string& base_model_name_or_path, const fs::path& out_dir,
                       const ModulePrefix& prefix) {
  const Collected c = collect(model, config);
  const auto stacked_modules = peft_stacked_modules(model, c.stacked);
  ParamMap ours = adapter_parameters(model);
  ParamMap tensors;
  for (const auto& [name, value] : ours) {
    auto [module, leaf] = split_last(name);
    if (auto it = stacked_modules.find(module); it != stacked_modules.end()) module = it->second;
    const std::string peft_leaf = leaf == "lora_A"   ? "lora_A.weight"
                                  : leaf == "lora_B" ? "lora_B.weight"
                                                     : "lora_magnitude_vector";
    tensors.set(kPeftPrefix + prefix.to_theirs(module) + "." + peft_leaf, value);
  }
  tensors.eval();

  // Module names when they describe the set exactly (every Linear with those names in the
  // chosen layers is adapted, as apply_lora did), else a regex naming each path. A model
  // whose text part sits inside a larger one (prefix) has other modules of the same names
  // there (a vision tower's q_proj), so it gets the regex.
  json j;
  if (c.paths.empty()) {
    j["target_modules"] = json::array();  // PEFT's way to adapt only target_parameters
  } else if (config.target_regex.empty() && prefix.ours == prefix.theirs) {
    std::set<std::string> names;
    for (const auto& p : c.paths) names.insert(p.substr(p.rfind('.') + 1));
    j["target_modules"] = std::vector<std::string>(names.begin(), names.end());
  } else {
    std::vector<std::string> theirs;
    for (const auto& p : c.paths) theirs.push_back(prefix.to_theirs(p));
    j["target_modules"] = exact_regex(theirs);
  }
  // PEFT matches target_parameters by suffix and ignores layers_to_transform for them:
  // the path inside a decoder layer ("mlp.experts.gate_up_proj") when every layer's is
  // adapted, else each full path. Without stacked adapters the key is left out, as
  // before it existed (PEFT reads that as null).
  if (!c.stacked.empty()) {
    std::vector<std::string> parameters;
    for (const auto& p : c.stacked) {
      const auto [layer, inner] = split_layer(p);
      const bool every_layer = config.target_regex.empty() && config.num_layers == 0 && layer >= 0;
      const std::string entry = every_layer ? inner : prefix.to_theirs(p);
      if (std::find(parameters.begin(), parameters.end(), entry) == parameters.end())
        parameters.push_back(entry);
    }
    j["target_parameters"] = parameters;
  }
  if (config.num_layers > 0 && config.target_regex.empty() && prefix.ours == prefix.theirs &&
      !c.paths.empty()) {
    std::set<int> layers;
    for (const auto& p : c.paths)
      if (int i = split_layer(p).first; i >= 0) layers.insert(i);
    j["layers_to_transform"] = std::vector<int>(layers.begin(), layers.end());
    j["layers_pattern"] = "layers";
  } else {
    j["layers_to_transform"] = nullptr;
    j["layers_pattern"] = nullptr;
  }
  j["peft_type"] = "LORA";
  j["task_type"] = "CAUSAL_LM";
  j["r"] = c.rank;
  j["lora_alpha"] = config.alpha;
  j["lora_dropout"] = config.dropout;
  j["use_rslora"] = config.rslora;
  j["use_dora"] = config.dora;
  j["bias"] = "none";
  // PEFT's flag for Conv1D bases, whose weights are stored (in, out) (GPT-2).
  bool transposed = false;
  for (const auto& [path, w] : wrappers(model))
    if (auto* linear = dynamic_cast<const nn::Linear*>(w->base().get()))
      transposed |= linear->transposed();
  j["fan_in_fan_out"] = transposed;
  j["inference_mode"] = true;
  j["init_lora_weights"] = true;
  j["modules_to_save"] = nullptr;
  j["rank_pattern"] = json::object();
  j["alpha_pattern"] = json::object();
  j["base_model_name_or_path"] = base_model_name_or_path;

  write_folder_atomically(out_dir, [&](const fs::path& tmp) {
    tensors.save_safetensors((tmp / "adapter_model.safetensors").string(), {{"format", "pt"}});
    write_json(tmp / "adapter_config.json", j);
  });
}

void save_mlx_lm_adapter(const nn::Module& model, const nn::LoraConfig& config,
                         const fs::path& out_dir) {
  const Collected c = collect(model, config);
  FT_CHECK(c.stacked.empty(), kPlace,
           "mlx-lm's layout has no form for adapters on stacked "
           "expert parameters ('",
           c.stacked.front(), "'); save in PEFT's layout");
  // mlx-lm adapts `keys` (paths inside a decoder layer) in each of the last num_layers
  // layers: check that the adapted set has that form.
  std::set<int> layers;
  std::set<std::string> keys;
  std::set<std::pair<int, std::string>> adapted;
  for (const auto& p : c.paths) {
    auto [layer, key] = split_layer(p);
    FT_CHECK(layer >= 0, kPlace, "mlx-lm adapters only sit in model.layers.<i>; '", p,
             "' cannot be saved in its layout");
    layers.insert(layer);
    keys.insert(key);
    adapted.insert({layer, key});
  }
  int total_layers = 0;
  for (const auto& [path, module] : model.named_modules())
    if (auto [layer, key] = split_layer(path); layer >= 0)
      total_layers = std::max(total_layers, layer + 1);
  const int num_layers = static_cast<int>(layers.size());
  FT_CHECK(
      *layers.begin() == total_layers - num_layers && adapted.size() == layers.size() * keys.size(),
      kPlace,
      "mlx-lm adapts the same modules in each of the last N layers; this model's adapters "
      "do not have that form");

  ParamMap tensors;
  for (const auto& [name, value] : adapter_parameters(model)) {
    const size_t dot = name.rfind('.');
    const std::string module = name.substr(0, dot), leaf = name.substr(dot + 1);
    if (leaf == "lora_magnitude")
      tensors.set(module + ".m", value);
    else
      tensors.set(module + (leaf == "lora_A" ? ".lora_a" : ".lora_b"),
                  mx::contiguous(mx::transpose(value)));
  }
  tensors.eval();

  json j;
  j["fine_tune_type"] = config.dora ? "dora" : "lora";
  j["num_layers"] = num_layers;
  j["lora_parameters"] = {{"rank", c.rank},
                          {"scale", lora_scale(config, c.rank)},
                          {"dropout", config.dropout},
                          {"keys", std::vector<std::string>(keys.begin(), keys.end())}};
  write_folder_atomically(out_dir, [&](const fs::path& tmp) {
    tensors.save_safetensors((tmp / "adapters.safetensors").string(), {{"format", "mlx"}});
    write_json(tmp / "adapter_config.json", j);
  });
}

Adapter load_adapter(const fs::path& dir, const nn::Module* model, const ModulePrefix& prefix) {
  std::error_code ec;
  FT_CHECK(fs::is_directory(dir, ec), kPlace, dir.string(), ": not a folder");
  Adapter a;
  if (fs::is_regular_file(dir / "adapter_model.safetensors", ec))
    a = read_peft(dir, model, prefix);
  else if (fs::is_regular_file(dir / "adapters.safetensors", ec))
    a = read_mlx_lm(dir);
  else
    throw Error(kPlace, dir.string() +
                            ": holds neither adapter_model.safetensors (PEFT) nor "
                            "adapters.safetensors (mlx-lm)");
  const fs::path weights_file = dir / (a.format == AdapterFormat::peft ? "adapter_model.safetensors"
                                                                       : "adapters.safetensors");
  FT_CHECK(!a.weights.empty(), kPlace, weights_file.string(), ": holds no tensors");

  // Each module needs lora_A and lora_B (and a magnitude exactly when DoRA), of the rank.
  std::set<std::string> modules;
  for (const auto& [name, value] : a.weights) modules.insert(name.substr(0, name.rfind('.')));
  std::vector<std::string> problems;
  for (const auto& m : modules) {
    const mx::array* A = a.weights.find(m + ".lora_A");
    const mx::array* B = a.weights.find(m + ".lora_B");
    const bool has_m = a.weights.contains(m + ".lora_magnitude");
    // A stacked parameter's pair has rank E*r (Note [Adapters on stacked expert parameters]).
    const bool stacked = std::binary_search(a.stacked.begin(), a.stacked.end(), m);
    if (!A || !B)
      problems.push_back(m + " lacks lora_A or lora_B");
    else if (A->ndim() != 2 || B->ndim() != 2 || A->shape(0) != B->shape(1) ||
             (stacked ? A->shape(0) % a.config.rank != 0 : A->shape(0) != a.config.rank))
      problems.push_back(m + ": lora_A/lora_B are not of rank " + std::to_string(a.config.rank) +
                         (stacked ? " per expert" : ""));
    if (has_m != a.config.dora)
      problems.push_back(m + (a.config.dora ? " lacks the DoRA magnitude"
                                            : " has a DoRA magnitude but the config is LoRA"));
  }
  if (!problems.empty()) {
    std::string msg = weights_file.string() + ":";
    for (const auto& p : problems) msg += " " + p + ";";
    msg.pop_back();
    throw Error(kPlace, msg);
  }
  a.modules.assign(modules.begin(), modules.end());
  a.config.target_modules.clear();
  a.config.target_regex = exact_regex(a.modules);
  a.config.num_layers = 0;
  return a;
}

std::vector<std::string> apply_adapter(nn::Module& model, const fs::path& dir,
                                       std::optional<mx::Dtype> dtype, const ModulePrefix& prefix) {
  Adapter a = load_adapter(dir, &model, prefix);
  const fs::path weights_file = dir / (a.format == AdapterFormat::peft ? "adapter_model.safetensors"
                                                                       : "adapters.safetensors");
  // Check every module against the model before changing anything.
  std::vector<std::string> problems;
  for (const auto& m : a.modules) {
    const auto& A = a.weights.at(m + ".lora_A");
    const auto& B = a.weights.at(m + ".lora_B");
    if (std::binary_search(a.stacked.begin(), a.stacked.end(), m)) {
      const auto [host_path, parameter] = split_last(m);
      const nn::ExpertWeights* host = host_at(model, host_path);
      const auto adaptable = host ? host->stacked_names() : std::vector<std::string>{};
      if (std::find(adaptable.begin(), adaptable.end(), parameter) == adaptable.end()) {
        problems.push_back("the model has no stacked expert parameter '" + m + "'");
        continue;
      }
      const nn::StackedWeight& w = host->stacked(parameter);
      const int experts = w.experts(), out = w.out_features(), in = w.in_features();
      if (A.shape(0) != experts * a.config.rank || A.shape(1) != in || B.shape(0) != out)
        problems.push_back("'" + m + "' is (" + std::to_string(experts) + ", " +
                           std::to_string(out) + ", " + std::to_string(in) +
                           ") in the model but the adapter is for (" +
                           std::to_string(A.shape(0) / a.config.rank) + ", " +
                           std::to_string(B.shape(0)) + ", " + std::to_string(A.shape(1)) + ")");
      continue;
    }
    auto module = model.find_module(m);
    int in = 0, out = 0;
    if (auto* l = dynamic_cast<nn::Linear*>(module.get())) {
      in = l->in_features(), out = l->out_features();
    } else if (auto* q = dynamic_cast<nn::QuantizedLinear*>(module.get())) {
      in = q->in_features(), out = q->out_features();
    } else if (!module) {
      problems.push_back("the model has no module '" + m + "' (an adapter for another model?)");
      continue;
    } else {
      problems.push_back("'" + m + "' is not a Linear layer of the model");
      continue;
    }
    if (A.shape(1) != in || B.shape(0) != out)
      problems.push_back("'" + m + "' is (" + std::to_string(out) + ", " + std::to_string(in) +
                         ") in the model but the adapter is for (" + std::to_string(B.shape(0)) +
                         ", " + std::to_string(A.shape(1)) + ")");
    if (const auto* mag = a.weights.find(m + ".lora_magnitude");
        mag && (mag->ndim() != 1 || mag->shape(0) != out))
      problems.push_back("'" + m + "': the DoRA magnitude does not have " + std::to_string(out) +
                         " entries");
  }
  if (!problems.empty()) {
    std::string msg = weights_file.string() + " does not fit this model (" +
                      std::to_string(problems.size()) + " problem" +
                      (problems.size() > 1 ? "s" : "") + "):";
    for (const auto& p : problems) msg += " " + p + ";";
    msg.pop_back();
    throw Error(kPlace, msg);
  }

  if (dtype)
    a.weights = tree_map(a.weights, [&](const mx::array& w) { return mx::astype(w, *dtype); });
  a.config.dtype = a.weights.begin()->second.dtype();
  auto paths = nn::apply_lora(model, a.config);
  FT_ASSERT(paths.size() == a.modules.size());
  model.load(a.weights, /*strict=*/false);
  return paths;
}

}  // namespace ft::io
