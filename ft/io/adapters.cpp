#include "ft/io/adapters.h"

#include <algorithm>
#include <set>

#include <mlx/ops.h>

#include "ft/io/adapter_files.h"

namespace ft::io {

using namespace adapter_files;

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

fs::path adapter_folder(const fs::path& dir) {
  std::error_code ec;
  auto holds = [&](const fs::path& d) {
    return fs::is_regular_file(d / "adapter_model.safetensors", ec) ||
           fs::is_regular_file(d / "adapters.safetensors", ec);
  };
  return !holds(dir) && holds(dir / "adapter") ? dir / "adapter" : dir;
}

Adapter load_adapter(const fs::path& given, const nn::Module* model, const ModulePrefix& prefix) {
  const fs::path dir = adapter_folder(given);
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
  const fs::path weights_file =
      adapter_folder(dir) /
      (a.format == AdapterFormat::peft ? "adapter_model.safetensors" : "adapters.safetensors");
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

std::optional<std::filesystem::path> adapter_chat_template(const std::filesystem::path& dir) {
  if (dir.empty()) return std::nullopt;
  std::error_code ec;
  const std::filesystem::path file = adapter_folder(dir) / kChatTemplateFile;
  if (!std::filesystem::is_regular_file(file, ec)) return std::nullopt;
  return file;
}

}  // namespace ft::io
