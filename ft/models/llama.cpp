#include "ft/models/llama.h"

#include <cmath>

#include <mlx/fast.h>
#include <mlx/ops.h>

#include "ft/kernels/swiglu.h"
#include "ft/nn/checkpoint.h"
#include "ft/nn/init.h"

namespace ft::models {

void LlamaConfig::validate() const {
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
  FT_CHECK(resolved_head_dim() % 2 == 0, "config", "head_dim must be even for rotary embeddings");
  FT_CHECK(rope_theta > 0 && rms_norm_eps > 0, "config",
           "rope_theta and rms_norm_eps must be positive");
}

namespace {

std::shared_ptr<nn::Layer> linear(int in, int out, bool bias, Rng& rng, mx::Dtype dtype) {
  return std::make_shared<nn::Linear>(in, out, bias, rng.next(), dtype);
}

}  // namespace

Attention::Attention(const LlamaConfig& config, Rng& rng, mx::Dtype dtype)
    : n_heads_(config.num_attention_heads),
      n_kv_heads_(config.num_key_value_heads),
      head_dim_(config.resolved_head_dim()),
      rope_theta_(config.rope_theta) {
  int hidden = config.hidden_size;
  bool bias = config.attention_bias;
  q_proj_ = linear(hidden, n_heads_ * head_dim_, bias, rng, dtype);
  k_proj_ = linear(hidden, n_kv_heads_ * head_dim_, bias, rng, dtype);
  v_proj_ = linear(hidden, n_kv_heads_ * head_dim_, bias, rng, dtype);
  o_proj_ = linear(n_heads_ * head_dim_, hidden, bias, rng, dtype);
  register_module("q_proj", &q_proj_);
  register_module("k_proj", &k_proj_);
  register_module("v_proj", &v_proj_);
  register_module("o_proj", &o_proj_);
}

mx::array Attention::operator()(const mx::array& x) {
  int batch = x.shape(0), length = x.shape(1);
  auto heads = [&](const mx::array& y, int n) {  // (B, L, n*D) -> (B, n, L, D)
    return mx::transpose(mx::reshape(y, {batch, length, n, head_dim_}), {0, 2, 1, 3});
  };
  mx::array q = heads((*q_proj_)(x), n_heads_);
  mx::array k = heads((*k_proj_)(x), n_kv_heads_);
  mx::array v = heads((*v_proj_)(x), n_kv_heads_);
  q = mx::fast::rope(q, head_dim_, false, rope_theta_, 1.0f, 0);
  k = mx::fast::rope(k, head_dim_, false, rope_theta_, 1.0f, 0);
  float scale = 1.0f / std::sqrt(static_cast<float>(head_dim_));
  mx::array out = mx::fast::scaled_dot_product_attention(q, k, v, scale, "causal");
  out = mx::reshape(mx::transpose(out, {0, 2, 1, 3}), {batch, length, n_heads_ * head_dim_});
  return (*o_proj_)(out);
}

Mlp::Mlp(const LlamaConfig& config, Rng& rng, mx::Dtype dtype) {
  gate_proj_ = linear(config.hidden_size, config.intermediate_size, false, rng, dtype);
  up_proj_ = linear(config.hidden_size, config.intermediate_size, false, rng, dtype);
  down_proj_ = linear(config.intermediate_size, config.hidden_size, false, rng, dtype);
  register_module("gate_proj", &gate_proj_);
  register_module("up_proj", &up_proj_);
  register_module("down_proj", &down_proj_);
}

mx::array Mlp::operator()(const mx::array& x) {
  return (*down_proj_)(kernels::swiglu((*gate_proj_)(x), (*up_proj_)(x)));
}

DecoderLayer::DecoderLayer(const LlamaConfig& config, Rng& rng, mx::Dtype dtype) {
  input_layernorm_ = std::make_shared<nn::RMSNorm>(config.hidden_size, config.rms_norm_eps, dtype);
  self_attn_ = std::make_shared<Attention>(config, rng, dtype);
  post_attention_layernorm_ =
      std::make_shared<nn::RMSNorm>(config.hidden_size, config.rms_norm_eps, dtype);
  mlp_ = std::make_shared<Mlp>(config, rng, dtype);
  register_module("input_layernorm", &input_layernorm_);
  register_module("self_attn", &self_attn_);
  register_module("post_attention_layernorm", &post_attention_layernorm_);
  register_module("mlp", &mlp_);
}

mx::array DecoderLayer::operator()(const mx::array& x) {
  mx::array h = x + (*self_attn_)((*input_layernorm_)(x));
  return h + (*mlp_)((*post_attention_layernorm_)(h));
}

LlamaBackbone::LlamaBackbone(const LlamaConfig& config, Rng& rng, mx::Dtype dtype) {
  // Small embeddings keep the first logits near uniform when the head is tied.
  embed_tokens_ = std::make_shared<nn::Embedding>(nn::init::normal(
      {config.vocab_size, config.hidden_size}, config.initializer_range, rng.next(), dtype));
  layers_ = std::make_shared<nn::ModuleList<DecoderLayer>>();
  for (int i = 0; i < config.num_hidden_layers; ++i)
    layers_->push_back(std::make_shared<DecoderLayer>(config, rng, dtype));
  norm_ = std::make_shared<nn::RMSNorm>(config.hidden_size, config.rms_norm_eps, dtype);
  register_module("embed_tokens", &embed_tokens_);
  register_module("layers", &layers_);
  register_module("norm", &norm_);
}

mx::array LlamaBackbone::operator()(const mx::array& ids) {
  FT_CHECK(ids.ndim() == 2, "llama", "input ids must be (batch, length), got ", ids.ndim(), "-D");
  mx::array h = (*embed_tokens_)(ids);
  for (size_t i = 0; i < layers_->size(); ++i) {
    DecoderLayer& layer = (*layers_)[i];
    if (gradient_checkpointing && training()) {
      auto run = [&layer](const std::vector<mx::array>& in) {
        return std::vector<mx::array>{layer(in[0])};
      };
      h = nn::checkpoint(layer, run)({h})[0];
    } else {
      h = layer(h);
    }
  }
  return (*norm_)(h);
}

LlamaForCausalLM::LlamaForCausalLM(const LlamaConfig& config, Rng& rng, mx::Dtype dtype)
    : config_(config) {
  config_.validate();
  model_ = std::make_shared<LlamaBackbone>(config_, rng, dtype);
  register_module("model", &model_);
  if (!config_.tie_word_embeddings) {
    lm_head_ = std::make_shared<nn::Linear>(config_.hidden_size, config_.vocab_size, false,
                                            rng.next(), dtype);
    register_module("lm_head", &lm_head_);
  }
}

const mx::array& LlamaForCausalLM::output_weight() const {
  return lm_head_ ? lm_head_->weight() : model_->embed_tokens_->weight();
}

mx::array LlamaForCausalLM::operator()(const mx::array& ids) {
  mx::array h = hidden_states(ids);
  return mx::matmul(h, mx::transpose(output_weight()));
}

}  // namespace ft::models
