// Llama (1, 2, 3, 3.1, 3.2; rope scaling llama3, linear, dynamic) and Mistral (the same
// layers with sliding-window attention): pre-norm layers of RMSNorm, attention with
// grouped key/value heads and SwiGLU, under Hugging Face's names
// model.embed_tokens, model.layers.N.{input_layernorm, self_attn.{q,k,v,o}_proj,
// post_attention_layernorm, mlp.{gate,up,down}_proj}, model.norm, lm_head.
#include "ft/models/families/families.h"

namespace ft::models::families {

namespace {

Config read(const io::ModelConfig& config) {
  Config c = read_common_config(config);
  if (config.get_string("model_type") == "mistral")
    c.sliding_window = static_cast<int>(read_size(config, "sliding_window", 0));
  return c;
}

nlohmann::json init_config(const std::string& type, const InitSizes& sizes) {
  bool mistral = type == "mistral";
  nlohmann::json j =
      common_init_config(mistral ? "MistralForCausalLM" : "LlamaForCausalLM", type, sizes);
  j["hidden_act"] = "silu";
  if (mistral) {
    j["sliding_window"] = nullptr;
  } else {
    j["attention_bias"] = false;
    j["mlp_bias"] = false;
    j["pretraining_tp"] = 1;
  }
  return j;
}

}  // namespace

std::unique_ptr<CausalLM> build_llama(const Config& c, Rng& rng, mx::Dtype dtype) {
  auto layer = [&](int i) -> std::shared_ptr<Block> {
    AttentionSpec attention;
    attention.qkv_bias = c.attention_bias || c.qkv_bias;
    attention.output_bias = c.attention_bias;
    if (c.qk_norm) attention.qk_norm = NormKind::rms;
    attention.window = c.window_of_layer(i);
    MlpSpec mlp;
    mlp.activation = c.hidden_act;
    mlp.bias = c.mlp_bias;
    return std::make_shared<PreNormLayer>(c, attention, mlp, rng, dtype);
  };
  return std::make_unique<CausalLM>(c, StackSpec{}, layer, rng, dtype);
}

Family llama() {
  return {.model_types = {"llama", "mistral"},
          .read_config = read,
          .build = build_llama,
          .init_config = init_config,
          .sanitize = drop_buffers,
          .default_lora_targets = kAttentionProjections};
}

}  // namespace ft::models::families
