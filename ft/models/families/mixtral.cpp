// Mixtral: Mistral's layers with the MLP replaced by a sparse mixture of experts
// (blocks.h's MoE): mlp.gate (the router) and mlp.experts.{gate_up_proj, down_proj}, as
// transformers 5 names them. Hub checkpoints in the older layout
// (block_sparse_moe.gate, block_sparse_moe.experts.E.{w1, w3, w2}) and mlx-lm's
// (block_sparse_moe.switch_mlp.{gate_proj, up_proj, down_proj}, floats or quantized) are
// stacked into it on load. The router's load-balancing loss joins the training loss when
// config.json sets output_router_logits (times router_aux_loss_coef), as in transformers.
#include <mlx/ops.h>

#include "ft/core/error.h"
#include "ft/models/families/families.h"

namespace ft::models::families {

namespace {

Config read(const io::ModelConfig& config) {
  Config c = read_common_config(config);
  c.sliding_window = read_size(config, "sliding_window", 0);
  c.num_experts = read_size(config, "num_local_experts");
  c.num_experts_per_tok = read_size(config, "num_experts_per_tok");
  if (config.get_bool("output_router_logits", false))
    c.router_aux_loss_coef = static_cast<float>(config.get_number("router_aux_loss_coef", 0.001));
  return c;
}

class MixtralLayer : public Block {
 public:
  MixtralLayer(const Config& c, int layer, Rng& rng, mx::Dtype dtype) {
    AttentionSpec attention;
    attention.window = c.window_of_layer(layer);
    input_layernorm_ = make_norm(c.norm, c.hidden_size, c.norm_eps, dtype);
    self_attn_ = std::make_shared<Attention>(c, attention, rng, dtype);
    post_attention_layernorm_ = make_norm(c.norm, c.hidden_size, c.norm_eps, dtype);
    mlp_ = std::make_shared<MoE>(c, rng, dtype);
    register_module("input_layernorm", &input_layernorm_);
    register_module("self_attn", &self_attn_);
    register_module("post_attention_layernorm", &post_attention_layernorm_);
    register_module("mlp", &mlp_);
  }
  std::string type_name() const override { return "MixtralLayer"; }

  mx::array operator()(const mx::array& x, const LayerInput& in) override {
    mx::array h = x + (*self_attn_)((*input_layernorm_)(x), in);
    return h + (*mlp_)((*post_attention_layernorm_)(h), in.router_logits);
  }

 private:
  std::shared_ptr<nn::Layer> input_layernorm_, post_attention_layernorm_;
  std::shared_ptr<Attention> self_attn_;
  std::shared_ptr<MoE> mlp_;
};

std::unique_ptr<CausalLM> build(const Config& c, Rng& rng, mx::Dtype dtype) {
  auto layer = [&](int i) -> std::shared_ptr<Block> {
    return std::make_shared<MixtralLayer>(c, i, rng, dtype);
  };
  return std::make_unique<CausalLM>(c, StackSpec{}, layer, rng, dtype);
}

// mlx-lm's stacked layout: switch_mlp's gate_proj and up_proj (experts, intermediate,
// hidden) each, floats or quantized over hidden, are the two halves of gate_up_proj's rows
// (quantization groups run along hidden, so the packed words, scales and biases join
// along the same axis); down_proj is down_proj. A quantized array's companions
// ".scales" / ".biases" become "_scales" / "_biases" (nn/experts.h).
void stack_switch_mlp(ParamMap& weights, const std::string& old, const std::string& experts) {
  const std::string mlp = old + "switch_mlp.";
  for (const char* part : {"weight", "scales", "biases"}) {
    const std::string suffix = std::string(part) == "weight" ? "" : std::string("_") + part;
    const std::string gate = mlp + "gate_proj." + part, up = mlp + "up_proj." + part,
                      down = mlp + "down_proj." + part;
    if (weights.contains(gate) || weights.contains(up)) {
      FT_CHECK(weights.contains(gate) && weights.contains(up), "mixtral", "tensor '",
               weights.contains(gate) ? up : gate, "' is missing beside '",
               weights.contains(gate) ? gate : up, "'");
      const mx::array& g = weights.at(gate);
      const mx::array& u = weights.at(up);
      FT_CHECK(g.ndim() == 3 && g.shape() == u.shape(), "mixtral", "tensors '", gate, "' and '", up,
               "' must be (experts, intermediate, hidden) alike");
      weights.set(experts + "gate_up_proj" + suffix, mx::concatenate({g, u}, 1));
      weights.erase(gate);
      weights.erase(up);
    }
    if (weights.contains(down)) {
      weights.set(experts + "down_proj" + suffix, weights.at(down));
      weights.erase(down);
    }
  }
}

// The Hub's per-expert layout into the stacked one: for each layer, w1 (gate) and w3
// (up), (intermediate, hidden) each, become rows of gate_up_proj[e]; w2 (hidden,
// intermediate) becomes down_proj[e]. Every expert of a layer must be there.
void sanitize(ParamMap& weights, const Config& c) {
  const std::string old_block = ".block_sparse_moe.";
  for (int layer = 0; layer < c.num_hidden_layers; ++layer) {
    const std::string prefix = "model.layers." + std::to_string(layer);
    const std::string old = prefix + old_block;
    for (const char* part : {"weight", "scales", "biases"}) {
      const std::string router = old + "gate." + part;
      if (!weights.contains(router)) continue;
      weights.set(prefix + ".mlp.gate." + part, weights.at(router));
      weights.erase(router);
    }
    stack_switch_mlp(weights, old, prefix + ".mlp.experts.");
    if (!weights.contains(old + "experts.0.w1.weight")) continue;
    std::vector<mx::array> gate_up, down;
    for (int e = 0; e < c.num_experts; ++e) {
      const std::string expert = old + "experts." + std::to_string(e) + ".";
      for (const char* w : {"w1", "w2", "w3"})
        FT_CHECK(weights.contains(expert + w + ".weight"), "mixtral", "tensor '", expert, w,
                 ".weight' is missing: config.json has ", c.num_experts, " experts");
      gate_up.push_back(
          mx::concatenate({weights.at(expert + "w1.weight"), weights.at(expert + "w3.weight")}, 0));
      down.push_back(weights.at(expert + "w2.weight"));
      for (const char* w : {"w1", "w2", "w3"}) weights.erase(expert + w + ".weight");
    }
    const std::string extra = old + "experts." + std::to_string(c.num_experts) + ".w1.weight";
    FT_CHECK(!weights.contains(extra), "mixtral", "tensor '", extra, "' is past the ",
             c.num_experts, " experts config.json declares");
    weights.set(prefix + ".mlp.experts.gate_up_proj", mx::stack(gate_up));
    weights.set(prefix + ".mlp.experts.down_proj", mx::stack(down));
  }
  drop_buffers(weights, c);
}

nlohmann::json init_config(const std::string&, const InitSizes& sizes) {
  nlohmann::json j = common_init_config("MixtralForCausalLM", "mixtral", sizes);
  j["hidden_act"] = "silu";
  j["sliding_window"] = nullptr;
  j["num_local_experts"] = 4;
  j["num_experts_per_tok"] = 2;
  j["router_aux_loss_coef"] = 0.02;
  j["output_router_logits"] = false;
  return j;
}

}  // namespace

Family mixtral() {
  return {.model_types = {"mixtral"},
          .read_config = read,
          .build = build,
          .init_config = init_config,
          .sanitize = sanitize,
          .default_lora_targets = kAttentionProjections};
}

}  // namespace ft::models::families
