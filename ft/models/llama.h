// A Llama-style decoder-only transformer with Hugging Face parameter names:
// model.embed_tokens, model.layers.N.{input_layernorm, self_attn.{q,k,v,o}_proj,
// post_attention_layernorm, mlp.{gate,up,down}_proj}, model.norm, lm_head.
//
// The same blocks serve Mistral (sliding-window attention), Qwen2 (q/k/v bias) and
// Qwen3 (RMSNorm of each query and key head, self_attn.{q,k}_norm): those families
// differ from Llama only in the switches of LlamaConfig below (see registry.h).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ft/core/random.h"
#include "ft/nn/embedding.h"
#include "ft/nn/linear.h"
#include "ft/nn/module.h"
#include "ft/nn/norm.h"

namespace ft::generate {
class KVCache;     // ft/generate/kv_cache.h
class LayerCache;  // ft/generate/kv_cache.h
}  // namespace ft::generate

namespace ft::models {

namespace mx = mlx::core;

// Rotary embedding scaling, Hugging Face's "rope_scaling" / "rope_parameters".
struct RopeScaling {
  enum class Type { none, linear, dynamic, llama3 };
  Type type = Type::none;
  float factor = 1.0f;
  // llama3: frequencies whose wavelength exceeds original_max_position_embeddings /
  // low_freq_factor are divided by factor, those below .../high_freq_factor kept, and
  // the band between interpolated.
  float low_freq_factor = 1.0f;
  float high_freq_factor = 4.0f;
  int original_max_position_embeddings = 8192;
};

struct LlamaConfig {
  std::string model_type = "llama";
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
  bool attention_bias = false;  // bias on q, k, v and o projections (Llama)
  bool qkv_bias = false;        // bias on q, k and v only (Qwen2)
  bool mlp_bias = false;        // bias on gate, up and down projections
  bool qk_norm = false;         // RMSNorm over head_dim of queries and keys before RoPE (Qwen3)
  // Each token attends to itself and the sliding_window - 1 tokens before it; 0: no
  // window. layer_types, when not empty, names each layer's attention
  // ("sliding_attention" or "full_attention") and the window applies to the former only.
  int sliding_window = 0;
  std::vector<std::string> layer_types;
  RopeScaling rope_scaling;
  // Dynamic NTK scaling starts past this length.
  int max_position_embeddings = 2048;
  float initializer_range = 0.02f;  // std of the embedding's normal initialisation

  int resolved_head_dim() const {
    return head_dim > 0 ? head_dim : hidden_size / num_attention_heads;
  }
  // The attention window of a layer, 0 for full causal attention.
  int window_of_layer(int layer) const;
  // Throws ft::Error naming the first inconsistent field.
  void validate() const;
};

class Attention : public nn::Module {
 public:
  // window: attention window of this layer (0: full causal attention).
  Attention(const LlamaConfig& config, Rng& rng, mx::Dtype dtype, int window = 0);
  std::string type_name() const override { return "Attention"; }
  // x: (batch, length, hidden) -> (batch, length, hidden), causal (and windowed).
  //
  // mask, when given, replaces the causal mask: bool (true: may attend) or additive
  // floats, broadcastable to (batch, heads, length, keys), e.g. segment_causal_mask of
  // a packed row; a sliding window still applies on top of it.
  //
  // With a cache, x holds the positions cache->offset() onwards: the keys and values
  // are appended to the cache and the queries attend to everything stored, causally
  // within x; keys = cache->offset() + length.
  mx::array operator()(const mx::array& x, const std::optional<mx::array>& mask = std::nullopt,
                       generate::LayerCache* cache = nullptr);

 private:
  // (B, n, L, D) at positions offset .. offset + L - 1 -> same.
  mx::array rotate(const mx::array& x, int offset) const;

  int n_heads_, n_kv_heads_, head_dim_, window_;
  float rope_theta_;
  RopeScaling rope_scaling_;
  int max_position_embeddings_;
  std::optional<mx::array> rope_periods_;  // (head_dim / 2,) for llama3 scaling
  std::shared_ptr<nn::Layer> q_proj_, k_proj_, v_proj_, o_proj_;
  std::shared_ptr<nn::RMSNorm> q_norm_, k_norm_;  // (head_dim,) weights; null without qk_norm
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
  DecoderLayer(const LlamaConfig& config, Rng& rng, mx::Dtype dtype, int window = 0);
  std::string type_name() const override { return "DecoderLayer"; }
  // mask and cache as in Attention.
  mx::array operator()(const mx::array& x, const std::optional<mx::array>& mask = std::nullopt,
                       generate::LayerCache* cache = nullptr);

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
  // mask and cache as in Attention; the cache has one LayerCache per layer.
  mx::array operator()(const mx::array& ids, const std::optional<mx::array>& mask = std::nullopt,
                       generate::KVCache* cache = nullptr);

  // An nn::Embedding, or an nn::QuantizedEmbedding in a quantized model.
  std::shared_ptr<nn::Layer> embed_tokens_;
  std::shared_ptr<nn::ModuleList<DecoderLayer>> layers_;
  std::shared_ptr<nn::RMSNorm> norm_;
  // Recompute each layer's activations in the backward pass instead of keeping them.
  bool gradient_checkpointing = false;
};

class LlamaForCausalLM : public nn::Module {
 public:
  LlamaForCausalLM(const LlamaConfig& config, Rng& rng, mx::Dtype dtype = mx::float32);
  std::string type_name() const override { return "LlamaForCausalLM"; }

  // ids: (batch, length) -> final hidden states (batch, length, hidden). mask as in
  // operator().
  mx::array hidden_states(const mx::array& ids,
                          const std::optional<mx::array>& mask = std::nullopt) {
    return (*model_)(ids, mask);
  }
  // ids: (batch, length) -> logits (batch, length, vocab). mask, when given, replaces
  // the causal mask: bool (true: may attend) or additive, broadcastable to (batch, heads,
  // length, length), e.g. segment_causal_mask(segment_ids) for packed rows.
  mx::array operator()(const mx::array& ids, const std::optional<mx::array>& mask = std::nullopt);
  // Incremental decoding: ids (batch, length) are the positions cache.offset() onwards;
  // their keys and values are appended to the cache (see ft/generate/kv_cache.h), and
  // the logits (batch, length, vocab) are those the full sequence would give at these
  // positions. A mask, when given, must cover every key: (.., length, offset + length).
  //
  // Dynamic NTK rope scaling, as in Hugging Face with a cache, picks its base from the
  // positions seen so far: past max_position_embeddings the cached keys keep the base
  // they were rotated with, so logits there differ from one full forward.
  mx::array forward(const mx::array& ids, generate::KVCache& cache,
                    const std::optional<mx::array>& mask = std::nullopt);
  // The output projection's weight (vocab, hidden): lm_head or the tied embedding,
  // dequantized (lazily, in the scales' dtype) when that layer is quantized. Throws
  // ft::Error when lm_head carries an adapter.
  mx::array output_weight() const;
  // hidden (..., hidden) -> logits (..., vocab) through lm_head or the tied embedding;
  // a quantized head multiplies through nn::quantized_matmul_t.
  mx::array output_logits(const mx::array& hidden) const;

  const LlamaConfig& config() const { return config_; }
  LlamaBackbone& backbone() { return *model_; }

 private:
  LlamaConfig config_;
  std::shared_ptr<LlamaBackbone> model_;
  // (vocab, hidden): an nn::Linear, or an nn::QuantizedLinear in a quantized model;
  // null when tied.
  std::shared_ptr<nn::Layer> lm_head_;
};

}  // namespace ft::models
