#include "apps/ft/lm_task.h"

#include <fstream>
#include <unordered_map>

#include <mlx/io.h>
#include <mlx/ops.h>
#include <mlx/transforms.h>

#include "ft/core/error.h"
#include "ft/io/model_folder.h"
#include "ft/kernels/linear_cross_entropy.h"
#include "ft/models/attention_mask.h"
#include "ft/train/losses.h"

namespace ft::cli {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// Batches are {inputs, targets, segment ids, positions}. Padded rows put padding after
// each sample, so plain causal attention keeps it out of every predicted token; packed
// rows hold several samples, which must not see each other (segment_causal_mask).
mx::array hidden_states(models::LlamaForCausalLM& model, const Batch& batch, bool packed) {
  if (packed && batch.size() > 2)
    return model.hidden_states(batch[0], models::segment_causal_mask(batch[2]));
  return model.hidden_states(batch[0]);
}

}  // namespace

LossFn causal_lm_loss(bool packed) {
  return [packed](nn::Module& m, const Batch& batch, const mx::array&) {
    auto& model = static_cast<models::LlamaForCausalLM&>(m);
    mx::array hidden = hidden_states(model, batch, packed);
    kernels::LinearCrossEntropyOptions ce;
    ce.reduction = train::Reduction::sum;
    mx::array loss = kernels::linear_cross_entropy(hidden, model.output_weight(), batch[1], ce);
    return LossOutput{loss, train::num_valid_tokens(batch[1])};
  };
}

train::EvalFn causal_lm_eval(bool packed) {
  return [packed](nn::Module& m, const Batch& batch) {
    auto& model = static_cast<models::LlamaForCausalLM&>(m);
    const mx::array& targets = batch[1];  // (B, L)
    mx::array hidden = hidden_states(model, batch, packed);
    kernels::LinearCrossEntropyOptions ce;
    ce.reduction = train::Reduction::sum;
    mx::array loss = kernels::linear_cross_entropy(hidden, model.output_weight(), targets, ce);
    mx::array logits = mx::matmul(hidden, mx::transpose(model.output_weight()));  // (B, L, V)
    mx::array predicted = mx::argmax(logits, -1);
    mx::array valid = mx::not_equal(targets, mx::array(-100));
    mx::array hits =
        mx::logical_and(valid, mx::equal(predicted, mx::astype(targets, predicted.dtype())));
    return train::EvalOutput{loss, mx::sum(valid), mx::sum(hits)};
  };
}

json adapter_config_json(const std::string& method, const nn::LoraConfig& lora,
                         const std::vector<std::string>& adapted) {
  json j = {{"format", "ft"}, {"method", method}};
  if (method != "full") {
    j["rank"] = lora.rank;
    j["alpha"] = lora.alpha;
    j["dropout"] = lora.dropout;
    j["rslora"] = lora.rslora;
    j["target_modules"] = lora.target_modules;
    j["target_regex"] = lora.target_regex;
    j["num_layers"] = lora.num_layers;
    j["adapted_modules"] = adapted;
  }
  return j;
}

void save_adapter(const models::LlamaForCausalLM& model, const json& config, const fs::path& dir) {
  fs::create_directories(dir);
  std::unordered_map<std::string, mx::array> tensors;
  for (const auto& [name, value] : model.trainable_parameters()) tensors.insert({name, value});
  // Written under temporary names and renamed, so a folder never holds half an adapter.
  fs::path weights = dir / "adapters.safetensors";
  mx::save_safetensors((dir / "adapters.tmp.safetensors").string(), tensors);
  fs::rename(dir / "adapters.tmp.safetensors", weights);
  std::ofstream(dir / "adapter_config.json.tmp") << config.dump(2) << "\n";
  fs::rename(dir / "adapter_config.json.tmp", dir / "adapter_config.json");
}

void load_adapter(models::LlamaForCausalLM& model, const fs::path& dir) {
  fs::path config_file = dir / "adapter_config.json";
  FT_CHECK(fs::exists(config_file), "adapter", config_file.string(), ": no such file");
  json config;
  try {
    config = json::parse(std::ifstream(config_file));
  } catch (const json::exception& e) {
    throw Error("adapter", config_file.string() + ": " + e.what());
  }
  std::string method = config.value("method", "");
  FT_CHECK(method == "lora" || method == "dora" || method == "full", "adapter",
           config_file.string(), ": method must be lora, dora or full, not '", method, "'");
  if (method != "full") {
    nn::LoraConfig lora;
    try {
      lora.rank = config.at("rank").get<int>();
      lora.alpha = config.at("alpha").get<float>();
      lora.rslora = config.value("rslora", false);
      lora.dora = method == "dora";
      lora.target_modules = config.value("target_modules", std::vector<std::string>{});
      lora.target_regex = config.value("target_regex", std::string());
      lora.num_layers = config.value("num_layers", 0);
    } catch (const json::exception& e) {
      throw Error("adapter", config_file.string() + ": " + e.what());
    }
    nn::apply_lora(model, lora);
  }
  ParamMap weights = io::load_weights(dir / "adapters.safetensors");
  ParamMap params = model.parameters();
  for (const auto& [name, value] : weights) {
    FT_CHECK(params.contains(name), "adapter", (dir / "adapters.safetensors").string(), ": tensor ",
             name, " is not a parameter of this model");
  }
  model.load(weights, /*strict=*/false);
}

}  // namespace ft::cli
