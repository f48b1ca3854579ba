// Phi-1, Phi-1.5 and Phi-2: each layer runs attention and the MLP side by side on one
// LayerNorm's output and adds both to the residual (h = x + attn(ln(x)) + mlp(ln(x))).
// Rotary embeddings turn the first partial_rotary_factor of each head (0.5); q, k, v and
// the output projection "dense" carry biases; the MLP is fc1, gelu_new, fc2; optional
// LayerNorms of each query and key head (qk_layernorm); the final norm is
// final_layernorm and lm_head has a bias.
#include <mlx/ops.h>

#include "ft/models/families/families.h"

namespace ft::models::families {

namespace {

Config read(const io::ModelConfig& config) {
  Config c = read_common_config(config);
  c.hidden_act = config.get_string("hidden_act", "gelu_new");
  c.norm = NormKind::layer;
  c.norm_eps = static_cast<float>(config.get_number("layer_norm_eps", 1e-5));
  c.qk_norm = config.get_bool("qk_layernorm", false);
  if (!config.has("partial_rotary_factor") &&
      !(config.has("rope_parameters") &&
        config.json()["rope_parameters"].contains("partial_rotary_factor")))
    c.partial_rotary_factor = 0.5f;
  return c;
}

class PhiLayer : public Block {
 public:
  PhiLayer(const Config& c, Rng& rng, mx::Dtype dtype) {
    AttentionSpec attention;
    attention.qkv_bias = attention.output_bias = true;
    attention.output_name = "dense";
    if (c.qk_norm) attention.qk_norm = NormKind::layer;
    attention.q_norm_name = "q_layernorm";
    attention.k_norm_name = "k_layernorm";
    MlpSpec mlp;
    mlp.kind = MlpSpec::Kind::plain;
    mlp.up_name = "fc1";
    mlp.down_name = "fc2";
    mlp.activation = c.hidden_act;
    mlp.bias = true;
    input_layernorm_ = make_norm(c.norm, c.hidden_size, c.norm_eps, dtype);
    self_attn_ = std::make_shared<Attention>(c, attention, rng, dtype);
    mlp_ = std::make_shared<Mlp>(c, mlp, rng, dtype);
    register_module("self_attn", &self_attn_);
    register_module("mlp", &mlp_);
    register_module("input_layernorm", &input_layernorm_);
  }
  std::string type_name() const override { return "PhiLayer"; }

  mx::array operator()(const mx::array& x, const LayerInput& in) override {
    mx::array normed = (*input_layernorm_)(x);
    return x + (*self_attn_)(normed, in) + (*mlp_)(normed);
  }

 private:
  std::shared_ptr<nn::Layer> input_layernorm_;
  std::shared_ptr<Attention> self_attn_;
  std::shared_ptr<Mlp> mlp_;
};

std::unique_ptr<CausalLM> build(const Config& c, Rng& rng, mx::Dtype dtype) {
  StackSpec stack;
  stack.norm_name = "final_layernorm";
  auto layer = [&](int) -> std::shared_ptr<Block> {
    return std::make_shared<PhiLayer>(c, rng, dtype);
  };
  return std::make_unique<CausalLM>(c, stack, layer, rng, dtype, HeadSpec{.bias = true});
}

nlohmann::json init_config(const std::string& type, const InitSizes& sizes) {
  nlohmann::json j = common_init_config("PhiForCausalLM", "phi", sizes);
  j.erase("rms_norm_eps");
  j["hidden_act"] = "gelu_new";
  j["layer_norm_eps"] = 1e-5;
  j["partial_rotary_factor"] = 0.5;
  j["qk_layernorm"] = false;
  j["tie_word_embeddings"] = false;
  return j;
}

}  // namespace

Family phi() {
  return {.model_types = {"phi"},
          .read_config = read,
          .build = build,
          .init_config = init_config,
          .sanitize = drop_buffers,
          .default_lora_targets = {"q_proj", "k_proj", "v_proj", "dense"}};
}

}  // namespace ft::models::families
