// PEFT's adapter layout (adapters.h): reading it into ft's names and writing it.
#include <algorithm>
#include <map>
#include <set>
#include <sstream>

#include <mlx/ops.h>

#include "ft/io/adapter_files.h"

namespace ft::io {

using namespace adapter_files;

namespace {

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

}  // namespace

namespace adapter_files {

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

}  // namespace adapter_files

std::string ModulePrefix::to_theirs(const std::string& path) const {
  if (ours == theirs || !path.starts_with(ours)) return path;
  return theirs + path.substr(ours.size());
}

std::string ModulePrefix::to_ours(const std::string& path) const {
  if (ours == theirs || !path.starts_with(theirs)) return path;
  return ours + path.substr(theirs.size());
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

}  // namespace ft::io
