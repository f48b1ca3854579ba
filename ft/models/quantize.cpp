#include "ft/models/quantize.h"

#include <memory>
#include <tuple>
#include <utility>

#include <mlx/transforms.h>

#include "ft/core/error.h"
#include "ft/nn/embedding.h"
#include "ft/nn/experts.h"
#include "ft/nn/linear.h"
#include "ft/nn/lora.h"
#include "ft/nn/quantized_linear.h"

namespace ft::models {

namespace {

bool is_quantized(const nn::Module* m) {
  if (auto* experts = dynamic_cast<const nn::ExpertWeights*>(m)) {
    for (const auto& name : experts->stacked_names())
      if (experts->stacked(name).is_quantized()) return true;
    return false;
  }
  return dynamic_cast<const nn::QuantizedLinear*>(m) ||
         dynamic_cast<const nn::QuantizedEmbedding*>(m);
}

bool has_expert_adapters(const nn::ExpertWeights& experts) {
  for (const auto& name : experts.stacked_names())
    if (experts.adapter(name)) return true;
  return false;
}

std::string join_problems(const std::vector<std::string>& problems) {
  std::string out = std::to_string(problems.size()) + " problem" +
                    (problems.size() == 1 ? "" : "s") + " with quantized weights: ";
  for (size_t i = 0; i < problems.size(); ++i) out += (i ? "; " : "") + problems[i];
  return out;
}

}  // namespace

namespace {

// (path, input size) of every module quantize_model considers, in named_modules order.
std::vector<std::pair<std::string, int>> quantizable_inputs(nn::Module& model) {
  std::vector<std::pair<std::string, int>> out;
  for (const auto& [path, module] : model.named_modules()) {
    if (path.empty()) continue;
    if (auto* linear = dynamic_cast<nn::Linear*>(module)) {
      out.emplace_back(path, linear->in_features());
    } else if (auto* embedding = dynamic_cast<nn::Embedding*>(module)) {
      out.emplace_back(path, embedding->dim());
    } else if (auto* experts = dynamic_cast<nn::ExpertWeights*>(module)) {
      for (const auto& name : experts->stacked_names())
        out.emplace_back(path + "." + name, experts->stacked(name).in_features());
    }
  }
  return out;
}

std::vector<std::string> quantize_modules(nn::Module& model, const QuantSpecFor& spec_for,
                                          bool evaluate, const std::string& when_none) {
  for (const auto& [path, module] : model.named_modules()) {
    FT_CHECK(!is_quantized(module), "quantize", "'", path,
             "' is already quantized; quantize a floating-point model");
    auto* experts = dynamic_cast<nn::ExpertWeights*>(module);
    FT_CHECK(!dynamic_cast<nn::LoRALinear*>(module) && !(experts && has_expert_adapters(*experts)),
             "quantize", "'", path,
             "' carries an adapter; quantize the base model before adding adapters");
  }
  // (path, spec) of the layers to quantize; the sizes are checked here, bits and group
  // size with a size every group size divides.
  std::vector<std::pair<std::string, io::QuantSpec>> targets;
  for (const auto& [path, in_features] : quantizable_inputs(model)) {
    std::optional<io::QuantSpec> spec = spec_for(path);
    if (!spec) continue;
    nn::check_quantization("quantize", 128, spec->group_size, spec->bits);
    if (in_features % spec->group_size == 0) targets.emplace_back(path, *spec);
  }
  FT_CHECK(!targets.empty(), "quantize", when_none);
  std::vector<std::string> paths;
  for (const auto& [path, spec] : targets) {
    std::shared_ptr<nn::Module> module = model.find_module(path);
    std::shared_ptr<nn::Module> quantized;
    if (auto* linear = dynamic_cast<nn::Linear*>(module.get())) {
      quantized = nn::QuantizedLinear::from_linear(*linear, spec.group_size, spec.bits);
    } else if (auto* embedding = dynamic_cast<nn::Embedding*>(module.get())) {
      quantized = nn::QuantizedEmbedding::from_embedding(*embedding, spec.group_size, spec.bits);
    } else {
      // A stacked expert weight changes form inside its host.
      const size_t dot = path.rfind('.');
      auto* experts =
          dynamic_cast<nn::ExpertWeights*>(model.find_module(path.substr(0, dot)).get());
      FT_ASSERT(experts);
      const std::string name = path.substr(dot + 1);
      auto weight =
          nn::StackedWeight::quantized(experts->stacked(name).weight, spec.group_size, spec.bits);
      if (evaluate) mx::eval({weight.weight, *weight.scales, *weight.biases});
      experts->set_stacked(name, std::move(weight));
      paths.push_back(path);
      continue;
    }
    // Evaluated now, the packed arrays no longer hold the float weight, which goes with
    // the replaced layer.
    if (evaluate) mx::eval(quantized->parameters().arrays());
    model.replace_module(path, quantized);
    paths.push_back(path);
  }
  return paths;
}

}  // namespace

std::vector<std::string> quantize_model(nn::Module& model, const io::QuantSpec& spec,
                                        bool evaluate) {
  nn::check_quantization("quantize", 128, spec.group_size, spec.bits);
  return quantize_modules(
      model, [&](const std::string&) { return std::optional<io::QuantSpec>(spec); }, evaluate,
      detail::concat("no Linear, Embedding or stacked expert weight has an input size that "
                     "group_size ",
                     spec.group_size, " divides"));
}

std::vector<std::string> quantize_model(nn::Module& model, const QuantSpecFor& spec_for,
                                        bool evaluate) {
  return quantize_modules(model, spec_for, evaluate,
                          "no Linear, Embedding or stacked expert weight is left to quantize: "
                          "each is kept in floats or has an input size its group size does not "
                          "divide");
}

std::vector<std::string> quantizable_paths(nn::Module& model) {
  std::vector<std::string> out;
  for (auto& [path, in_features] : quantizable_inputs(model)) out.push_back(path);
  return out;
}

std::vector<std::string> dequantize_model(nn::Module& model) {
  std::vector<std::pair<std::string, std::shared_ptr<nn::Module>>> replaced;
  for (const auto& [path, module] : model.named_modules()) {
    if (auto* q = dynamic_cast<nn::QuantizedLinear*>(module))
      replaced.emplace_back(path, std::make_shared<nn::Linear>(q->dequantized_weight(), q->bias()));
    else if (auto* e = dynamic_cast<nn::QuantizedEmbedding*>(module))
      replaced.emplace_back(path, std::make_shared<nn::Embedding>(e->dequantized_weight()));
  }
  std::vector<std::string> paths;
  for (auto& [path, layer] : replaced) {
    FT_CHECK(!path.empty(), "dequantize", "the root module itself cannot be replaced");
    model.replace_module(path, layer);
    paths.push_back(path);
  }
  for (const auto& [path, module] : model.named_modules()) {
    auto* experts = dynamic_cast<nn::ExpertWeights*>(module);
    if (!experts) continue;
    for (const auto& name : experts->stacked_names()) {
      const nn::StackedWeight& w = experts->stacked(name);
      if (!w.is_quantized()) continue;
      experts->set_stacked(name, nn::StackedWeight::floats(w.dequantized()));
      paths.push_back(path.empty() ? name : path + "." + name);
    }
  }
  return paths;
}

void set_quantization_config(nlohmann::json& config, const std::optional<io::QuantSpec>& spec) {
  config.erase("quantization");
  config.erase("quantization_config");
  if (!spec) return;
  set_quantization_config(config, io::QuantizationConfig{.defaults = *spec, .modules = {}});
}

void set_quantization_config(nlohmann::json& config, const io::QuantizationConfig& quantization) {
  auto spec = [](const io::QuantSpec& s) {
    return nlohmann::json{{"group_size", s.group_size}, {"bits", s.bits}};
  };
  nlohmann::json entry = spec(quantization.defaults);
  for (const auto& [module, module_spec] : quantization.modules)
    entry[module] = module_spec ? spec(*module_spec) : nlohmann::json(false);
  config["quantization"] = entry;
  config["quantization_config"] = entry;
}

std::vector<std::string> make_quantized_layers(
    nn::Module& model, const ParamMap& weights,
    const std::optional<io::QuantizationConfig>& config) {
  std::vector<std::string> problems;
  std::vector<std::pair<std::string, std::shared_ptr<nn::Module>>> replaced;
  for (const std::string& path : io::quantized_modules(weights)) {
    if (!config) {
      problems.push_back("'" + path +
                         "' has quantized weights but config.json has no \"quantization\"");
      continue;
    }
    std::optional<io::QuantSpec> spec = config->for_module(path);
    if (!spec) {
      problems.push_back("'" + path +
                         "' has quantized weights but config.json's \"quantization\" marks it "
                         "false");
      continue;
    }
    std::shared_ptr<nn::Module> module = model.find_module(path);
    if (!module) continue;  // its tensors are reported as unexpected by the strict load
    mx::Dtype dtype = weights.at(path + ".scales").dtype();
    try {
      if (auto* linear = dynamic_cast<nn::Linear*>(module.get())) {
        replaced.emplace_back(
            path, std::make_shared<nn::QuantizedLinear>(
                      linear->in_features(), linear->out_features(), linear->bias().has_value(),
                      spec->group_size, spec->bits, dtype));
      } else if (auto* embedding = dynamic_cast<nn::Embedding*>(module.get())) {
        replaced.emplace_back(path, std::make_shared<nn::QuantizedEmbedding>(
                                        embedding->num_embeddings(), embedding->dim(),
                                        spec->group_size, spec->bits, dtype));
      } else {
        problems.push_back("'" + path + "' has quantized weights but is a " + module->type_name() +
                           ", not a Linear or Embedding");
      }
    } catch (const Error& e) {
      problems.push_back("'" + path + "': " + e.fact());
    }
  }
  // Stacked expert weights: "<path>" with "<path>_scales" and "<path>_biases".
  std::vector<std::tuple<std::string, nn::ExpertWeights*, std::string, nn::StackedWeight>> stacked;
  for (const auto& [host_path, module] : model.named_modules()) {
    auto* experts = dynamic_cast<nn::ExpertWeights*>(module);
    if (!experts) continue;
    for (const auto& name : experts->stacked_names()) {
      const std::string path = host_path.empty() ? name : host_path + "." + name;
      if (!weights.contains(path + "_scales")) continue;
      std::optional<io::QuantSpec> spec = config ? config->for_module(path) : std::nullopt;
      if (!spec) {
        problems.push_back(
            "'" + path + "' has quantized weights but config.json " +
            (config ? "marks it false in its \"quantization\"" : "has no \"quantization\""));
        continue;
      }
      const nn::StackedWeight& w = experts->stacked(name);
      try {
        stacked.emplace_back(path, experts, name,
                             nn::StackedWeight::zeros_quantized(
                                 w.experts(), w.out_features(), w.in_features(), spec->group_size,
                                 spec->bits, weights.at(path + "_scales").dtype()));
      } catch (const Error& e) {
        problems.push_back("'" + path + "': " + e.fact());
      }
    }
  }
  if (!problems.empty()) throw Error("quantize", join_problems(problems));
  std::vector<std::string> paths;
  for (auto& [path, layer] : replaced) {
    model.replace_module(path, layer);
    paths.push_back(path);
  }
  for (auto& [path, experts, name, weight] : stacked) {
    experts->set_stacked(name, std::move(weight));
    paths.push_back(path);
  }
  return paths;
}

void check_quantized_training(const io::ModelConfig& config, int bits, int group_size, bool full) {
  const bool quantized_folder = io::quantization_config(config).has_value();
  if (bits != 0) {
    // Worded for this request; the same sets as nn::check_quantization.
    FT_CHECK(bits == 2 || bits == 3 || bits == 4 || bits == 5 || bits == 6 || bits == 8, "train",
             "quantize bits must be 0 (off), 2, 3, 4, 5, 6 or 8, got ", bits);
    FT_CHECK(group_size == 32 || group_size == 64 || group_size == 128, "train",
             "quantize group size must be 32, 64 or 128, got ", group_size);
    FT_CHECK(!quantized_folder, "train", config.file().string(),
             ": the model is quantized already; train on it without quantize bits");
  }
  FT_CHECK(!full || (bits == 0 && !quantized_folder), "train",
           "full fine-tuning needs a floating-point model: ",
           quantized_folder ? "the model is quantized" : "quantize bits were given",
           "; train LoRA or DoRA adapters on a quantized base (QLoRA)");
}

}  // namespace ft::models
