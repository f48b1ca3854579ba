// A Llama-style decoder-only transformer with Hugging Face parameter names:
// model.embed_tokens, model.layers.N.{input_layernorm, self_attn.{q,k,v,o}_proj,
// post_attention_layernorm, mlp.{gate,up,down}_proj}, model.norm, lm_head.
#pragma once

#include <memory>

#include "ft/core/random.h"
#include "ft/nn/embedding.h"
#include "ft/nn/linear.h"
#include "ft/nn/module.h"
#include "ft/nn/norm.h"

namespace ft::models {

namespace mx = mlx::core;

struct LlamaConfig {
  int vocab_size = 32000;
  int hidden_size = 256;
  int intermediate_size = 688;
  int num_hidden_layers = 4;
  int num_attention_heads = 8;
  int num_key_value_heads = 4;
  int head_dim = 0;  // 0: hidden_size / num_attention_heads
  float rope_theta = 10000.0f;
  float rms_norm_eps = 1e-5f;
  bool tie_word_embeddings = false;
  bool attention_bias = false;
  float initializer_range = 0.02f;  // std of the embedding's normal initialisation

  int resolved_head_dim() const {
    return head_dim > 0 ? head_dim : hidden_size / num_attention_heads;
  }
  // Throws ft::Error naming the first inconsistent field.
  void validate() const;
};

class Attention : public nn::Module {
 public:
  Attention(const LlamaConfig& config, Rng& rng, mx::Dtype dtype);
  std::string type_name() const override { return "Attention"; }
  // x: (batch, length, hidden) -> (batch, length, hidden), causal.
  mx::array operator()(const mx::array& x);

 private:
  int n_heads_, n_kv_heads_, head_dim_;
  float rope_theta_;
  std::shared_ptr<nn::Layer> q_proj_, k_proj_, v_proj_, o_proj_;
};

class Mlp : public nn::Module {
 public:
  Mlp(const LlamaConfig& config, Rng& rng, mx::Dtype dtype);
  std::string type_name() const override { return "Mlp"; }
  mx::array operator()(const mx::array& x);

 private:
  std::shared_ptr<nn::Layer> gate_proj_, up_proj_, down_proj_;
};

class DecoderLayer : public nn::Module {
 public:
  DecoderLayer(const LlamaConfig& config, Rng& rng, mx::Dtype dtype);
  std::string type_name() const override { return "DecoderLayer"; }
  mx::array operator()(const mx::array& x);

 private:
  std::shared_ptr<nn::RMSNorm> input_layernorm_, post_attention_layernorm_;
  std::shared_ptr<Attention> self_attn_;
  std::shared_ptr<Mlp> mlp_;
};

// The stack without the output head: "model.*" in Hugging Face checkpoints.
class LlamaBackbone : public nn::Module {
 public:
  LlamaBackbone(const LlamaConfig& config, Rng& rng, mx::Dtype dtype);
  std::string type_name() const override { return "LlamaBackbone"; }
  // ids: (batch, length) int -> hidden states (batch, length, hidden) after the final norm.
  mx::array operator()(const mx::array& ids);

  std::shared_ptr<nn::Embedding> embed_tokens_;
  std::shared_ptr<nn::ModuleList<DecoderLayer>> layers_;
  std::shared_ptr<nn::RMSNorm> norm_;
  // Recompute each layer's activations in the backward pass instead of keeping them.
  bool gradient_checkpointing = false;
};

class LlamaForCausalLM : public nn::Module {
 public:
  LlamaForCausalLM(const LlamaConfig& config, Rng& rng, mx::Dtype dtype = mx::float32);
  std::string type_name() const override { return "LlamaForCausalLM"; }

  // ids: (batch, length) -> final hidden states (batch, length, hidden).
  mx::array hidden_states(const mx::array& ids) { return (*model_)(ids); }
  // ids: (batch, length) -> logits (batch, length, vocab).
  mx::array operator()(const mx::array& ids);
  // The output projection's weight (vocab, hidden): lm_head or the tied embedding.
  const mx::array& output_weight() const;

  const LlamaConfig& config() const { return config_; }
  LlamaBackbone& backbone() { return *model_; }

 private:
  LlamaConfig config_;
  std::shared_ptr<LlamaBackbone> model_;
  std::shared_ptr<nn::Linear> lm_head_;  // null when tied
};

}  // namespace ft::models
