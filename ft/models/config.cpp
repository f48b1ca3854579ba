#include "ft/models/config.h"

#include <algorithm>
#include <cmath>

#include "ft/core/error.h"

namespace ft::models {

// Note [Config limits]
// ~~~~~~~~~~~~~~~~~~~~
// Sizes read from config.json are checked before anything is built: a model is a tree
// of modules with one object per layer and head, so a mistyped num_hidden_layers of a
// million would cost minutes and gigabytes before any weight is read. Each size must be
// a positive integer no larger than kMaxSize (2^24: past every published vocabulary and
// width), layers no more than kMaxLayers (256, twice the deepest published model, Llama
// 3.1 405B's 126; building the lazy modules costs about 5 ms and 0.5 MB a layer under
// the fuzz build's sanitizers, so 1,024 layers took 5 to 25 s there), so products of two
// sizes stay far from int64's range.
// Config::validate then bounds what the sizes make together: head_dim at most
// kMaxHeadDim (4096; published models use 64 to 256), since scaled rotary embeddings
// compute head_dim / 2 periods per layer when the model is built, and every weight
// (the experts' stack is a product of three sizes) at most kMaxWeightElements (2^48),
// so byte counts stay far from int64's range too.
namespace {

constexpr int64_t kMaxSize = int64_t{1} << 24;
constexpr int64_t kMaxLayers = 256;
constexpr int64_t kMaxHeadDim = 4096;
constexpr double kMaxWeightElements = double(int64_t{1} << 48);

int64_t limit_of(const std::string& key) {
  return key == "num_hidden_layers" || key == "n_layer" ? kMaxLayers : kMaxSize;
}

int checked_size(const io::ModelConfig& config, const std::string& key, int64_t value) {
  int64_t limit = limit_of(key);
  FT_CHECK(value > 0 && value <= limit, config.file().string(), "field '", key,
           "' must be between 1 and ", limit, ", got ", value);
  return static_cast<int>(value);
}

}  // namespace

int read_size(const io::ModelConfig& config, const std::string& key) {
  return checked_size(config, key, config.get_int(key));
}

int read_size(const io::ModelConfig& config, const std::string& key, int fallback) {
  return config.has(key) ? read_size(config, key) : fallback;
}

std::vector<std::string> read_layer_types(const io::ModelConfig& config) {
  std::vector<std::string> out;
  if (!config.has("layer_types")) return out;
  const nlohmann::json& types = config.json()["layer_types"];
  FT_CHECK(types.is_array(), config.file().string(), "layer_types must be a list");
  for (const auto& t : types) {
    FT_CHECK(t.is_string(), config.file().string(), "layer_types must hold strings, got ",
             t.dump());
    out.push_back(t.get<std::string>());
  }
  return out;
}

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
    double value = rope[key].get<double>();
    FT_CHECK(std::isfinite(value), where, "rope_scaling.", key, " must be finite");
    return value;
  };
  auto required = [&](const char* key) {
    FT_CHECK(rope.contains(key) && !rope[key].is_null(), where, "rope_scaling type '", type,
             "' needs field ", key);
    return number(key, 0);
  };
  auto factors = [&](const char* key) {
    FT_CHECK(rope.contains(key) && rope[key].is_array(), where, "rope_scaling type '", type,
             "' needs the list ", key);
    std::vector<float> out;
    for (const auto& v : rope[key]) {
      FT_CHECK(v.is_number() && v.get<double>() > 0, where, "rope_scaling.", key,
               " must hold positive numbers, got ", v.dump());
      out.push_back(v.get<float>());
    }
    return out;
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
    double original = required("original_max_position_embeddings");
    FT_CHECK(original >= 1 && original <= 1e9, where,
             "rope_scaling.original_max_position_embeddings must be between 1 and 1e9, got ",
             original);
    out.original_max_position_embeddings = static_cast<int>(original);
  } else if (type == "longrope" || type == "su") {
    out.type = Type::longrope;
    out.short_factor = factors("short_factor");
    out.long_factor = factors("long_factor");
    // Phi-3 keeps original_max_position_embeddings at the top level of config.json.
    double original = number("original_max_position_embeddings", 0);
    if (original == 0) original = config.get_number("original_max_position_embeddings", 0);
    FT_CHECK(original >= 1 && original <= 1e9, where,
             "longrope rope_scaling needs original_max_position_embeddings");
    out.original_max_position_embeddings = static_cast<int>(original);
    out.attention_factor = static_cast<float>(number("attention_factor", 0));
    out.factor = static_cast<float>(number("factor", 0));
  } else {
    throw Error(where, "unsupported rope_scaling type '" + type +
                           "' (supported: default, linear, dynamic, llama3, longrope)");
  }
  return out;
}

Config read_common_config(const io::ModelConfig& config) {
  Config c;
  c.model_type = config.get_string("model_type", "llama");
  c.vocab_size = read_size(config, "vocab_size");
  c.hidden_size = read_size(config, "hidden_size");
  c.intermediate_size = read_size(config, "intermediate_size");
  c.num_hidden_layers = read_size(config, "num_hidden_layers");
  c.num_attention_heads = read_size(config, "num_attention_heads");
  c.num_key_value_heads = read_size(config, "num_key_value_heads", c.num_attention_heads);
  c.head_dim = read_size(config, "head_dim", 0);
  c.hidden_act = config.get_string("hidden_act", "silu");
  c.norm_eps = static_cast<float>(config.get_number("rms_norm_eps", 1e-6));
  c.tie_word_embeddings = config.get_bool("tie_word_embeddings", false);
  c.attention_bias = config.get_bool("attention_bias", false);
  c.mlp_bias = config.get_bool("mlp_bias", false);
  c.max_position_embeddings = read_size(config, "max_position_embeddings", 2048);
  c.initializer_range = static_cast<float>(config.get_number("initializer_range", 0.02));
  c.partial_rotary_factor = static_cast<float>(config.get_number("partial_rotary_factor", 1.0));

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
    if (rope.is_object() && rope.contains("partial_rotary_factor")) {
      FT_CHECK(rope["partial_rotary_factor"].is_number(), config.file().string(),
               "rope_parameters.partial_rotary_factor must be a number");
      c.partial_rotary_factor = rope["partial_rotary_factor"].get<float>();
    }
  } else if (config.has("rope_scaling")) {
    c.rope_scaling = read_rope_scaling(config, config.json()["rope_scaling"]);
  }
  c.rope_theta = static_cast<float>(theta);
  return c;
}

int Config::rotary_dims() const {
  int dims = static_cast<int>(resolved_head_dim() * partial_rotary_factor);
  return dims - dims % 2;
}

int Config::window_of_layer(int layer) const {
  if (sliding_window == 0) return 0;
  if (layer_types.empty()) return sliding_window;
  return layer_types.at(layer) == "sliding_attention" ? sliding_window : 0;
}

bool Config::layer_is(int layer, const std::string& type) const {
  return !layer_types.empty() && layer_types.at(layer) == type;
}

void Config::validate() const {
  auto positive = [](int value, const char* name) {
    FT_CHECK(value > 0, "config", name, " must be positive, got ", value);
  };
  positive(vocab_size, "vocab_size");
  positive(hidden_size, "hidden_size");
  positive(intermediate_size, "intermediate_size");
  positive(num_hidden_layers, "num_hidden_layers");
  positive(num_attention_heads, "num_attention_heads");
  positive(num_key_value_heads, "num_key_value_heads");
  FT_CHECK(num_attention_heads % num_key_value_heads == 0, "config", "num_attention_heads (",
           num_attention_heads, ") is not a multiple of num_key_value_heads (", num_key_value_heads,
           ")");
  FT_CHECK(head_dim > 0 || hidden_size % num_attention_heads == 0, "config", "hidden_size (",
           hidden_size, ") is not a multiple of num_attention_heads (", num_attention_heads, ")");
  FT_CHECK(head_dim >= 0 && resolved_head_dim() <= kMaxHeadDim &&
               int64_t(resolved_head_dim()) * num_attention_heads <= kMaxSize,
           "config", "head_dim ", resolved_head_dim(), " is out of range (at most ", kMaxHeadDim,
           ", and head_dim * num_attention_heads at most ", kMaxSize, ")");
  // The largest weights: the embedding, the MLP's (or each expert's gate and up, stacked),
  // the attention's projections. Note [Config limits].
  const double hidden = hidden_size, attention = double(resolved_head_dim()) * num_attention_heads;
  const double largest =
      std::max({vocab_size * hidden, 2.0 * std::max(num_experts, 1) * intermediate_size * hidden,
                attention * hidden});
  FT_CHECK(largest <= kMaxWeightElements, "config", "the sizes make a weight of ", largest,
           " elements, past the limit of 2^48 (hidden_size ", hidden_size, ", intermediate_size ",
           intermediate_size, ", vocab_size ", vocab_size, ", num_local_experts ", num_experts,
           ")");
  FT_CHECK(partial_rotary_factor > 0 && partial_rotary_factor <= 1, "config",
           "partial_rotary_factor must be in (0, 1], got ", partial_rotary_factor);
  FT_CHECK(rotary_dims() > 0 && resolved_head_dim() % 2 == 0, "config",
           "head_dim must be even for rotary embeddings");
  FT_CHECK(rope_theta > 0 && norm_eps > 0 && std::isfinite(rope_theta) && std::isfinite(norm_eps),
           "config", "rope_theta and the norm's eps must be positive");
  FT_CHECK(sliding_window >= 0, "config", "sliding_window must not be negative, got ",
           sliding_window);
  FT_CHECK(layer_types.empty() || static_cast<int>(layer_types.size()) == num_hidden_layers,
           "config", "layer_types has ", layer_types.size(), " entries for ", num_hidden_layers,
           " layers");
  FT_CHECK(
      attn_logit_softcapping >= 0 && final_logit_softcapping >= 0 && query_pre_attn_scalar >= 0,
      "config", "soft-capping values and query_pre_attn_scalar must not be negative");
  if (rope_scaling.type != RopeScaling::Type::none &&
      rope_scaling.type != RopeScaling::Type::longrope)
    FT_CHECK(rope_scaling.factor > 0, "config", "rope_scaling factor must be positive, got ",
             rope_scaling.factor);
  if (rope_scaling.type == RopeScaling::Type::llama3)
    FT_CHECK(rope_scaling.high_freq_factor > rope_scaling.low_freq_factor &&
                 rope_scaling.low_freq_factor > 0 &&
                 rope_scaling.original_max_position_embeddings > 0,
             "config",
             "llama3 rope_scaling needs high_freq_factor > low_freq_factor > 0 and a positive "
             "original_max_position_embeddings");
  if (rope_scaling.type == RopeScaling::Type::dynamic)
    FT_CHECK(max_position_embeddings > 0, "config",
             "dynamic rope_scaling needs a positive max_position_embeddings");
  if (rope_scaling.type == RopeScaling::Type::longrope) {
    size_t pairs = static_cast<size_t>(rotary_dims() / 2);
    FT_CHECK(rope_scaling.short_factor.size() == pairs && rope_scaling.long_factor.size() == pairs,
             "config", "longrope short_factor and long_factor need ", pairs,
             " entries each (rotated dims / 2), got ", rope_scaling.short_factor.size(), " and ",
             rope_scaling.long_factor.size());
  }
  if (num_experts > 0)
    FT_CHECK(num_experts_per_tok > 0 && num_experts_per_tok <= num_experts, "config",
             "num_experts_per_tok must be between 1 and num_local_experts (", num_experts,
             "), got ", num_experts_per_tok);
}

}  // namespace ft::models
