// GPT-2 and DialoGPT: learned position embeddings (wpe) added to the token embeddings
// (wte), pre-norm layers of LayerNorm (ln_1, attn, ln_2, mlp), attention with one fused
// projection attn.c_attn (q, k, v) and attn.c_proj, an MLP c_fc -> gelu_new -> c_proj,
// the final norm ln_f and a head tied to wte. The projections are Conv1D layers, whose
// weights are stored (in, out): nn::Linear's transposed storage keeps them as they are.
// Checkpoints saved from GPT2Model (the original gpt2 and DialoGPT files) have no
// "transformer." prefix and carry the attention's causal-mask buffers (attn.bias,
// attn.masked_bias), which are dropped.
#include "ft/core/error.h"
#include "ft/models/families/families.h"

namespace ft::models::families {

namespace {

Config read(const io::ModelConfig& config) {
  Config c;
  c.vocab_size = read_size(config, "vocab_size");
  c.hidden_size = read_size(config, "n_embd");
  c.num_hidden_layers = read_size(config, "n_layer");
  c.num_attention_heads = read_size(config, "n_head");
  c.num_key_value_heads = c.num_attention_heads;
  c.intermediate_size = config.has("n_inner") ? read_size(config, "n_inner") : 4 * c.hidden_size;
  c.max_position_embeddings = read_size(config, "n_positions", 1024);
  c.hidden_act = config.get_string("activation_function", "gelu_new");
  c.norm = NormKind::layer;
  c.norm_eps = static_cast<float>(config.get_number("layer_norm_epsilon", 1e-5));
  c.initializer_range = static_cast<float>(config.get_number("initializer_range", 0.02));
  c.tie_word_embeddings = config.get_bool("tie_word_embeddings", true);
  FT_CHECK(!config.get_bool("scale_attn_by_inverse_layer_idx", false), config.file().string(),
           "scale_attn_by_inverse_layer_idx is not supported");
  FT_CHECK(config.get_bool("scale_attn_weights", true), config.file().string(),
           "scale_attn_weights false is not supported");
  return c;
}

std::unique_ptr<CausalLM> build(const Config& c, Rng& rng, mx::Dtype dtype) {
  const StackSpec stack{
      .embed_name = "wte", .positions_name = "wpe", .layers_name = "h", .norm_name = "ln_f"};
  auto layer = [&](int) -> std::shared_ptr<Block> {
    AttentionSpec attention;
    attention.projections = AttentionSpec::Projections::fused_qkv;
    attention.qkv_name = "c_attn";
    attention.output_name = "c_proj";
    attention.qkv_bias = attention.output_bias = true;
    attention.transposed = true;
    attention.rotary = false;
    MlpSpec mlp;
    mlp.kind = MlpSpec::Kind::plain;
    mlp.up_name = "c_fc";
    mlp.down_name = "c_proj";
    mlp.activation = c.hidden_act;
    mlp.bias = true;
    mlp.transposed = true;
    return std::make_shared<PreNormLayer>(c, attention, mlp, rng, dtype,
                                          PreNormNames{"ln_1", "attn", "ln_2", "mlp"});
  };
  return std::make_unique<CausalLM>(c, stack, layer, rng, dtype,
                                    HeadSpec{.stack_name = "transformer"});
}

void sanitize(ParamMap& weights, const Config& c) {
  for (const std::string& name : weights.names()) {
    if (name.ends_with(".attn.bias") || name.ends_with(".attn.masked_bias")) {
      weights.erase(name);
    } else if (!name.starts_with("transformer.") && !name.starts_with("lm_head.")) {
      weights.set("transformer." + name, weights.at(name));
      weights.erase(name);
    }
  }
  drop_buffers(weights, c);
}

nlohmann::json init_config(const std::string&, const InitSizes& s) {
  nlohmann::json j = {{"architectures", {"GPT2LMHeadModel"}},
                      {"model_type", "gpt2"},
                      {"vocab_size", s.vocab_size},
                      {"n_embd", s.hidden_size},
                      {"n_layer", s.num_hidden_layers},
                      {"n_head", s.num_attention_heads},
                      {"n_inner", nullptr},
                      {"n_positions", 1024},
                      {"activation_function", "gelu_new"},
                      {"layer_norm_epsilon", 1e-5},
                      {"initializer_range", 0.02},
                      {"scale_attn_weights", true},
                      {"tie_word_embeddings", true},
                      {"use_cache", true},
                      {"torch_dtype", "float32"},
                      {"transformers_version", "4.56.0"}};
  if (s.bos_token_id >= 0) j["bos_token_id"] = s.bos_token_id;
  if (s.eos_token_id >= 0) j["eos_token_id"] = s.eos_token_id;
  return j;
}

}  // namespace

Family gpt2() {
  return {.model_types = {"gpt2"},
          .read_config = read,
          .build = build,
          .init_config = init_config,
          .sanitize = sanitize,
          .default_lora_targets = {"c_attn", "c_proj"}};
}

}  // namespace ft::models::families
