// Gemma 2 and Gemma 3 (text): four RMSNorms per layer, each scaling by 1 + w (before and
// after the attention, before and after the MLP), a GELU-gated MLP, embeddings scaled by
// sqrt(hidden), scores scaled by 1 / sqrt(query_pre_attn_scalar), sliding-window layers
// alternating with full ones (layer_types). Gemma 2 soft-caps the attention scores and
// the final logits; Gemma 3 has q/k norms and its own rotary base on sliding layers
// (rope_parameters.sliding_attention, or rope_local_base_freq). "gemma3" folders (the
// multimodal model) load their text part.
#include <cmath>

#include <mlx/ops.h>

#include "ft/core/error.h"
#include "ft/models/families/families.h"

namespace ft::models::families {

namespace {

// Gemma 3's rope_parameters are keyed by layer type; older configs keep rope_theta,
// rope_local_base_freq and rope_scaling (of the full layers) at the top level.
void read_gemma3_rope(const io::ModelConfig& config, Config& c) {
  const std::string where = config.file().string();
  c.rope_theta = static_cast<float>(config.get_number("rope_theta", 1000000.0));
  c.rope_local_theta = static_cast<float>(config.get_number("rope_local_base_freq", 10000.0));
  if (config.has("rope_scaling"))
    c.rope_scaling = read_rope_scaling(config, config.json()["rope_scaling"]);
  if (!config.has("rope_parameters")) return;
  const nlohmann::json& rope = config.json()["rope_parameters"];
  FT_CHECK(rope.is_object(), where, "rope_parameters must be an object");
  auto theta_of = [&](const nlohmann::json& params, float fallback) {
    if (!params.contains("rope_theta")) return fallback;
    FT_CHECK(params["rope_theta"].is_number() && params["rope_theta"].get<double>() > 0, where,
             "rope_parameters' rope_theta must be a positive number");
    return params["rope_theta"].get<float>();
  };
  if (rope.contains("full_attention")) {
    c.rope_theta = theta_of(rope["full_attention"], c.rope_theta);
    c.rope_scaling = read_rope_scaling(config, rope["full_attention"]);
  }
  if (rope.contains("sliding_attention")) {
    c.rope_local_theta = theta_of(rope["sliding_attention"], c.rope_local_theta);
    RopeScaling local = read_rope_scaling(config, rope["sliding_attention"]);
    FT_CHECK(local.type == RopeScaling::Type::none, where,
             "rope_parameters.sliding_attention: only the default rope type is supported");
  }
}

// A multimodal "gemma3" config keeps the text model's fields in text_config: that object as
// a gemma3_text config.json (its model_type and architecture, and the outer dtype where it
// has none); nullopt for a text config.
std::optional<nlohmann::json> text_config_of(const io::ModelConfig& outer) {
  if (outer.get_string("model_type") != "gemma3") return std::nullopt;
  FT_CHECK(outer.has("text_config") && outer.json()["text_config"].is_object(),
           outer.file().string(), "a gemma3 config needs the object text_config");
  nlohmann::json text = outer.json()["text_config"];
  text["model_type"] = "gemma3_text";
  text["architectures"] = {"Gemma3ForCausalLM"};
  for (const char* key : {"torch_dtype", "dtype"})
    if (outer.json().contains(key) && !text.contains(key)) text[key] = outer.json()[key];
  return text;
}

std::optional<TextPart> text_part(const io::ModelConfig& config) {
  std::optional<nlohmann::json> text = text_config_of(config);
  if (!text) return std::nullopt;
  // transformers' Gemma3ForConditionalGeneration: model.language_model is the text model.
  return TextPart{.config = *text, .module_prefix = "model.language_model."};
}

Config read(const io::ModelConfig& outer) {
  std::optional<nlohmann::json> text = text_config_of(outer);
  io::ModelConfig config = text ? io::ModelConfig(*text, outer.file()) : outer;
  bool gemma2 = config.get_string("model_type", "gemma3_text") == "gemma2";
  Config c = read_common_config(config);
  c.hidden_act =
      config.get_string("hidden_activation", config.get_string("hidden_act", "gelu_pytorch_tanh"));
  c.norm = NormKind::rms_plus_one;
  c.tie_word_embeddings = config.get_bool("tie_word_embeddings", true);
  c.head_dim = read_size(config, "head_dim", 256);
  c.query_pre_attn_scalar = static_cast<float>(config.get_number("query_pre_attn_scalar", 256));
  c.sliding_window = read_size(config, "sliding_window", 4096);
  c.final_logit_softcapping =
      static_cast<float>(config.get_number("final_logit_softcapping", gemma2 ? 30.0 : 0.0));
  c.attn_logit_softcapping =
      static_cast<float>(config.get_number("attn_logit_softcapping", gemma2 ? 50.0 : 0.0));
  c.layer_types = read_layer_types(config);
  if (c.layer_types.empty()) {
    // Every pattern-th layer is full, the others slide (Gemma 2: every second).
    int pattern = gemma2 ? 2 : read_size(config, "sliding_window_pattern", 6);
    for (int i = 0; i < c.num_hidden_layers; ++i)
      c.layer_types.push_back((i + 1) % pattern ? "sliding_attention" : "full_attention");
  }
  if (gemma2) {
    c.rope_local_theta = 0;
  } else {
    c.qk_norm = true;
    read_gemma3_rope(config, c);
  }
  return c;
}

class GemmaLayer : public Block {
 public:
  GemmaLayer(const Config& c, int layer, Rng& rng, mx::Dtype dtype) {
    AttentionSpec attention;
    attention.qkv_bias = attention.output_bias = c.attention_bias;
    if (c.qk_norm) attention.qk_norm = NormKind::rms_plus_one;
    attention.window = c.window_of_layer(layer);
    bool sliding = c.layer_is(layer, "sliding_attention");
    if (sliding && c.rope_local_theta > 0) {
      attention.rope_base = c.rope_local_theta;
      attention.rope_scaled = false;
    }
    attention.scale = 1.0f / std::sqrt(c.query_pre_attn_scalar);
    attention.softcap = c.attn_logit_softcapping;
    MlpSpec mlp;
    mlp.activation = c.hidden_act;
    auto norm = [&] { return make_norm(c.norm, c.hidden_size, c.norm_eps, dtype); };
    input_layernorm_ = norm();
    self_attn_ = std::make_shared<Attention>(c, attention, rng, dtype);
    post_attention_layernorm_ = norm();
    pre_feedforward_layernorm_ = norm();
    mlp_ = std::make_shared<Mlp>(c, mlp, rng, dtype);
    post_feedforward_layernorm_ = norm();
    register_module("input_layernorm", &input_layernorm_);
    register_module("self_attn", &self_attn_);
    register_module("post_attention_layernorm", &post_attention_layernorm_);
    register_module("pre_feedforward_layernorm", &pre_feedforward_layernorm_);
    register_module("mlp", &mlp_);
    register_module("post_feedforward_layernorm", &post_feedforward_layernorm_);
  }
  std::string type_name() const override { return "GemmaLayer"; }

  mx::array operator()(const mx::array& x, const LayerInput& in) override {
    mx::array h = x + (*post_attention_layernorm_)((*self_attn_)((*input_layernorm_)(x), in));
    return h + (*post_feedforward_layernorm_)((*mlp_)((*pre_feedforward_layernorm_)(h)));
  }

 private:
  std::shared_ptr<nn::Layer> input_layernorm_, post_attention_layernorm_;
  std::shared_ptr<nn::Layer> pre_feedforward_layernorm_, post_feedforward_layernorm_;
  std::shared_ptr<Attention> self_attn_;
  std::shared_ptr<Mlp> mlp_;
};

std::unique_ptr<CausalLM> build(const Config& c, Rng& rng, mx::Dtype dtype) {
  StackSpec stack;
  stack.embed_scale = std::sqrt(static_cast<float>(c.hidden_size));
  auto layer = [&](int i) -> std::shared_ptr<Block> {
    return std::make_shared<GemmaLayer>(c, i, rng, dtype);
  };
  return std::make_unique<CausalLM>(c, stack, layer, rng, dtype);
}

// The multimodal model's text weights (language_model.model.* in older checkpoints,
// model.language_model.* in newer ones) under the text model's names; the vision tower
// and projector are dropped.
void sanitize(ParamMap& weights, const Config& c) {
  for (const std::string& name : weights.names()) {
    std::string renamed = name;
    for (const char* prefix : {"language_model.model.", "model.language_model."})
      if (name.starts_with(prefix)) renamed = "model." + name.substr(std::string(prefix).size());
    if (name.starts_with("language_model.lm_head.")) renamed = name.substr(15);
    bool vision = name.starts_with("vision_tower.") || name.starts_with("multi_modal_projector.") ||
                  name.starts_with("model.vision_tower.") ||
                  name.starts_with("model.multi_modal_projector.");
    if (vision) {
      weights.erase(name);
    } else if (renamed != name) {
      weights.set(renamed, weights.at(name));
      weights.erase(name);
    }
  }
  drop_buffers(weights, c);
}

nlohmann::json init_config(const std::string& type, const InitSizes& sizes) {
  bool gemma2 = type == "gemma2";
  nlohmann::json j = common_init_config(gemma2 ? "Gemma2ForCausalLM" : "Gemma3ForCausalLM",
                                        gemma2 ? "gemma2" : "gemma3_text", sizes);
  j.erase("hidden_act");
  j["hidden_activation"] = "gelu_pytorch_tanh";
  j["query_pre_attn_scalar"] = sizes.hidden_size / sizes.num_attention_heads;
  j["sliding_window"] = 512;
  j["attention_bias"] = false;
  if (gemma2) {
    j["final_logit_softcapping"] = 30.0;
    j["attn_logit_softcapping"] = 50.0;
  } else {
    j.erase("rope_theta");
    j.erase("rope_scaling");
    j["rope_parameters"] = {
        {"full_attention", {{"rope_type", "default"}, {"rope_theta", 1000000.0}}},
        {"sliding_attention", {{"rope_type", "default"}, {"rope_theta", 10000.0}}}};
    j["sliding_window_pattern"] = 2;
  }
  return j;
}

}  // namespace

Family gemma() {
  return {.model_types = {"gemma2", "gemma3_text", "gemma3"},
          .read_config = read,
          .build = build,
          .init_config = init_config,
          .sanitize = sanitize,
          .default_lora_targets = kAttentionProjections,
          .text_part = text_part};
}

}  // namespace ft::models::families
