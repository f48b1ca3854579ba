// Phi-3, Phi-3.5 and Phi-4-mini: Llama's pre-norm layers with the projections fused,
// self_attn.qkv_proj (q rows, then k, then v) and mlp.gate_up_proj ([gate | up]), rotary
// embeddings over partial_rotary_factor of each head, and longrope ("su") scaling, whose
// long factors take over past original_max_position_embeddings.
#include "ft/models/families/families.h"

namespace ft::models::families {

namespace {

Config read(const io::ModelConfig& config) {
  Config c = read_common_config(config);
  c.norm_eps = static_cast<float>(config.get_number("rms_norm_eps", 1e-5));
  c.sliding_window = read_size(config, "sliding_window", 0);
  return c;
}

std::unique_ptr<CausalLM> build(const Config& c, Rng& rng, mx::Dtype dtype) {
  auto layer = [&](int i) -> std::shared_ptr<Block> {
    AttentionSpec attention;
    attention.projections = AttentionSpec::Projections::fused_qkv;
    attention.qkv_bias = attention.output_bias = c.attention_bias;
    attention.window = c.window_of_layer(i);
    MlpSpec mlp;
    mlp.kind = MlpSpec::Kind::fused_gated;
    mlp.up_name = "gate_up_proj";
    mlp.activation = c.hidden_act;
    return std::make_shared<PreNormLayer>(c, attention, mlp, rng, dtype);
  };
  return std::make_unique<CausalLM>(c, StackSpec{}, layer, rng, dtype);
}

nlohmann::json init_config(const std::string& type, const InitSizes& sizes) {
  nlohmann::json j = common_init_config("Phi3ForCausalLM", "phi3", sizes);
  j["hidden_act"] = "silu";
  j["rms_norm_eps"] = 1e-5;
  j["sliding_window"] = nullptr;
  j["partial_rotary_factor"] = 1.0;
  j["original_max_position_embeddings"] = 2048;
  return j;
}

}  // namespace

Family phi3() {
  return {.model_types = {"phi3"},
          .read_config = read,
          .build = build,
          .init_config = init_config,
          .sanitize = drop_buffers,
          .default_lora_targets = {"qkv_proj", "o_proj"}};
}

}  // namespace ft::models::families
