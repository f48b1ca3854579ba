// mlx-lm's adapter layout (adapters.h): reading it into ft's names and writing it.
#include <set>

#include <mlx/ops.h>

#include "ft/io/adapter_files.h"

namespace ft::io {

using namespace adapter_files;

namespace adapter_files {

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

}  // namespace adapter_files

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

}  // namespace ft::io
