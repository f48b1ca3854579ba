#include "ft/models/registry.h"

#include <algorithm>
#include <map>
#include <mutex>
#include <sstream>

#include "ft/core/error.h"
#include "ft/models/quantize.h"

namespace ft::models {

namespace {

RopeScaling read_rope_scaling(const io::ModelConfig& config, const nlohmann::json& rope) {
  using Type = RopeScaling::Type;
  const std::string where = config.file().string();
  RopeScaling out;
  FT_CHECK(rope.is_object(), where, "rope_scaling must be an object");
  std::string type;
  for (const char* key : {"rope_type", "type"}) {
    if (rope.contains(key) && !rope[key].is_null()) {
      FT_CHECK(rope[key].is_string(), where, "rope_scaling.", key, " must be a string");
      type = rope[key].get<std::string>();
      break;
    }
  }
  auto number = [&](const char* key, double fallback) {
    if (!rope.contains(key) || rope[key].is_null()) return fallback;
    FT_CHECK(rope[key].is_number(), where, "rope_scaling.", key, " must be a number, got ",
             rope[key].dump());
    return rope[key].get<double>();
  };
  auto required = [&](const char* key) {
    FT_CHECK(rope.contains(key) && !rope[key].is_null(), where, "rope_scaling type '", type,
             "' needs field ", key);
    return number(key, 0);
  };
  if (type.empty() || type == "default") {
    out.type = Type::none;
  } else if (type == "linear") {
    out.type = Type::linear;
    out.factor = static_cast<float>(required("factor"));
  } else if (type == "dynamic") {
    out.type = Type::dynamic;
    out.factor = static_cast<float>(required("factor"));
  } else if (type == "llama3") {
    out.type = Type::llama3;
    out.factor = static_cast<float>(required("factor"));
    out.low_freq_factor = static_cast<float>(number("low_freq_factor", 1.0));
    out.high_freq_factor = static_cast<float>(number("high_freq_factor", 4.0));
    out.original_max_position_embeddings =
        static_cast<int>(required("original_max_position_embeddings"));
  } else {
    throw Error(where, "unsupported rope_scaling type '" + type +
                           "' (supported: default, linear, dynamic, llama3)");
  }
  return out;
}

LlamaConfig read_mistral(const io::ModelConfig& config) {
  LlamaConfig c = read_llama_config(config);
  c.sliding_window = static_cast<int>(config.get_int("sliding_window", 0));
  return c;
}

// Qwen's sliding window is off unless use_sliding_window is set; layer_types then say
// which layers use it.
void read_qwen_window(const io::ModelConfig& config, LlamaConfig& c) {
  if (!config.get_bool("use_sliding_window", false)) return;
  c.sliding_window = static_cast<int>(config.get_int("sliding_window", 0));
  if (config.has("layer_types")) {
    const nlohmann::json& types = config.json()["layer_types"];
    FT_CHECK(types.is_array(), config.file().string(), "layer_types must be a list");
    for (const auto& t : types) {
      FT_CHECK(t.is_string(), config.file().string(), "layer_types must hold strings");
      c.layer_types.push_back(t.get<std::string>());
    }
  }
}

LlamaConfig read_qwen2(const io::ModelConfig& config) {
  LlamaConfig c = read_llama_config(config);
  c.attention_bias = false;
  c.qkv_bias = true;
  read_qwen_window(config, c);
  return c;
}

LlamaConfig read_qwen3(const io::ModelConfig& config) {
  LlamaConfig c = read_llama_config(config);
  c.qk_norm = true;
  read_qwen_window(config, c);
  return c;
}

struct Registry {
  std::mutex mutex;
  std::map<std::string, ConfigReader> readers{
      {"llama", read_llama_config},
      {"mistral", read_mistral},
      {"qwen2", read_qwen2},
      {"qwen3", read_qwen3},
  };
};

Registry& registry() {
  static Registry r;
  return r;
}

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& item : items) out += (out.empty() ? "" : ", ") + item;
  return out;
}

}  // namespace

LlamaConfig read_llama_config(const io::ModelConfig& config) {
  LlamaConfig c;
  c.model_type = config.get_string("model_type", "llama");
  c.vocab_size = static_cast<int>(config.get_int("vocab_size"));
  c.hidden_size = static_cast<int>(config.get_int("hidden_size"));
  c.intermediate_size = static_cast<int>(config.get_int("intermediate_size"));
  c.num_hidden_layers = static_cast<int>(config.get_int("num_hidden_layers"));
  c.num_attention_heads = static_cast<int>(config.get_int("num_attention_heads"));
  c.num_key_value_heads =
      static_cast<int>(config.get_int("num_key_value_heads", c.num_attention_heads));
  c.head_dim = static_cast<int>(config.get_int("head_dim", 0));
  c.rms_norm_eps = static_cast<float>(config.get_number("rms_norm_eps", 1e-6));
  c.tie_word_embeddings = config.get_bool("tie_word_embeddings", false);
  c.attention_bias = config.get_bool("attention_bias", false);
  c.mlp_bias = config.get_bool("mlp_bias", false);
  c.max_position_embeddings = static_cast<int>(config.get_int("max_position_embeddings", 2048));
  c.initializer_range = static_cast<float>(config.get_number("initializer_range", 0.02));

  // transformers 5 writes rope_parameters {rope_type, rope_theta, ...}; older configs
  // have rope_theta and rope_scaling at the top level.
  double theta = config.get_number("rope_theta", 10000.0);
  if (config.has("rope_parameters")) {
    const nlohmann::json& rope = config.json()["rope_parameters"];
    if (rope.is_object() && rope.contains("rope_theta")) {
      FT_CHECK(rope["rope_theta"].is_number(), config.file().string(),
               "rope_parameters.rope_theta must be a number");
      theta = rope["rope_theta"].get<double>();
    }
    c.rope_scaling = read_rope_scaling(config, rope);
  } else if (config.has("rope_scaling")) {
    c.rope_scaling = read_rope_scaling(config, config.json()["rope_scaling"]);
  }
  c.rope_theta = static_cast<float>(theta);
  try {
    c.validate();
  } catch (const Error& e) {
    throw Error(config.file().string(), e.what());
  }
  return c;
}

void register_model_type(const std::string& model_type, ConfigReader reader) {
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  r.readers[model_type] = std::move(reader);
}

std::vector<std::string> known_model_types() {
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  std::vector<std::string> out;
  for (const auto& [name, reader] : r.readers) out.push_back(name);
  return out;
}

LlamaConfig from_hf_config(const io::ModelConfig& config) {
  FT_CHECK(config.has("model_type"), config.file().string(),
           "missing field model_type (known: ", join(known_model_types()), ")");
  std::string type = config.get_string("model_type");
  ConfigReader reader;
  {
    Registry& r = registry();
    std::lock_guard lock(r.mutex);
    auto it = r.readers.find(type);
    if (it != r.readers.end()) reader = it->second;
  }
  FT_CHECK(reader != nullptr, config.file().string(), "unknown model_type '", type,
           "' (known: ", join(known_model_types()), ")");
  LlamaConfig c = reader(config);
  c.model_type = type;
  return c;
}

std::unique_ptr<LlamaForCausalLM> load_model(const std::filesystem::path& folder, mx::Dtype dtype) {
  const io::ModelConfig hf_config = io::read_config(folder);
  LlamaConfig config = from_hf_config(hf_config);
  std::optional<io::QuantizationConfig> quantization = io::quantization_config(hf_config);
  ParamMap weights = io::load_weights(folder, dtype);
  for (const std::string& name : weights.names()) {
    bool rotary_buffer = name.ends_with("rotary_emb.inv_freq");
    // A tied head may still be saved, quantized (weight, scales, biases) or not.
    bool tied_head = config.tie_word_embeddings && name.starts_with("lm_head.");
    if (rotary_buffer || tied_head) weights.erase(name);
  }
  // The random initialisation is lazy and replaced before it is ever evaluated.
  Rng rng(0);
  auto model = std::make_unique<LlamaForCausalLM>(config, rng, dtype);
  try {
    make_quantized_layers(*model, weights, quantization);
    model->load(weights, /*strict=*/true);
  } catch (const Error& e) {
    throw Error(folder.string(), e.what());
  }
  return model;
}

}  // namespace ft::models
