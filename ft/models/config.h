// A model's hyper-parameters, whatever its family: what the shared blocks
// (ft/models/blocks.h) need to build every layer. Each family's reader fills it from
// config.json (ft/models/families/*.cpp); fields a family does not use keep their
// defaults.
#pragma once

#include <string>
#include <vector>

#include "ft/io/model_folder.h"  // defines: io::ModelConfig

namespace ft::models {

// Rotary embedding scaling, Hugging Face's "rope_scaling" / "rope_parameters".
struct RopeScaling {
  enum class Type { none, linear, dynamic, llama3, longrope };
  Type type = Type::none;
  float factor = 1.0f;
  // llama3: frequencies whose wavelength exceeds original_max_position_embeddings /
  // low_freq_factor are divided by factor, those below .../high_freq_factor kept, and
  // the band between interpolated.
  float low_freq_factor = 1.0f;
  float high_freq_factor = 4.0f;
  int original_max_position_embeddings = 8192;
  // longrope (Phi-3): per-frequency divisors, (rotated dims / 2,) each; the long ones
  // apply once a sequence is longer than original_max_position_embeddings. The cos and
  // sin are multiplied by attention_factor (0: sqrt(1 + ln(max / original) / ln(original))).
  std::vector<float> short_factor, long_factor;
  float attention_factor = 0.0f;
};

// The kinds of layer normalisation the families use.
enum class NormKind {
  rms,           // x / rms(x) * w
  rms_plus_one,  // x / rms(x) * (1 + w), w starting at zeros (Gemma)
  layer,         // (x - mean) / std * w + b (Phi-2, GPT-2)
};

struct Config {
  std::string model_type = "llama";
  int vocab_size = 32000;
  int hidden_size = 256;
  int intermediate_size = 688;
  int num_hidden_layers = 4;
  int num_attention_heads = 8;
  int num_key_value_heads = 4;
  int head_dim = 0;  // 0: hidden_size / num_attention_heads
  std::string hidden_act = "silu";
  NormKind norm = NormKind::rms;
  float norm_eps = 1e-5f;
  float initializer_range = 0.02f;  // std of the embedding's normal initialisation
  bool tie_word_embeddings = false;

  // Attention.
  bool attention_bias = false;  // bias on q, k, v and o projections (Llama)
  bool qkv_bias = false;        // bias on q, k and v only (Qwen2)
  bool mlp_bias = false;        // bias on the MLP's projections
  bool qk_norm = false;         // a norm over head_dim of queries and keys before RoPE
  // 1 / sqrt(query_pre_attn_scalar) scales the scores when > 0 (Gemma), else
  // 1 / sqrt(head_dim).
  float query_pre_attn_scalar = 0.0f;
  float attn_logit_softcapping = 0.0f;   // scores -> c tanh(scores / c) when > 0 (Gemma 2)
  float final_logit_softcapping = 0.0f;  // the same on the output logits
  // Each token attends to itself and the sliding_window - 1 tokens before it; 0: no
  // window. layer_types, when not empty, names each layer ("sliding_attention",
  // "full_attention", or a family's own kinds such as LFM2's "conv") and the window
  // applies to sliding layers only.
  int sliding_window = 0;
  std::vector<std::string> layer_types;

  // Rotary embeddings.
  float rope_theta = 10000.0f;
  float rope_local_theta = 0.0f;       // > 0: the base of sliding layers (Gemma 3)
  float partial_rotary_factor = 1.0f;  // share of head_dim rotated (Phi)
  RopeScaling rope_scaling;
  int max_position_embeddings = 2048;

  // Mixture of experts.
  int num_experts = 0;
  int num_experts_per_tok = 0;
  float router_aux_loss_coef = 0.0f;

  // Short convolutions (LFM2): the kernel length, and biases on the convolution block.
  int conv_kernel = 0;
  bool conv_bias = false;

  int resolved_head_dim() const {
    return head_dim > 0 ? head_dim : hidden_size / num_attention_heads;
  }
  // Dimensions of each head that RoPE rotates (even).
  int rotary_dims() const;
  // The attention window of a layer, 0 for full causal attention.
  int window_of_layer(int layer) const;
  // Whether layer_types names this layer `type` (false when layer_types is empty).
  bool layer_is(int layer, const std::string& type) const;
  // Throws ft::Error naming the first inconsistent field.
  void validate() const;
};

// Reads the fields most families share, under their usual names: vocab_size,
// hidden_size, intermediate_size, num_hidden_layers, num_attention_heads,
// num_key_value_heads, head_dim, hidden_act, rms_norm_eps, tie_word_embeddings,
// attention_bias, mlp_bias, max_position_embeddings, initializer_range, rope_theta and
// rope_scaling (or transformers 5's rope_parameters), partial_rotary_factor. Throws
// ft::Error naming config.json and the field for missing, ill-typed or out-of-range
// values and for an unknown rope type.
Config read_common_config(const io::ModelConfig& config);

// rope_scaling or rope_parameters as found in config (an object), into c.
RopeScaling read_rope_scaling(const io::ModelConfig& config, const nlohmann::json& rope);

// A positive int field within [1, limit] (Note [Config limits] in config.cpp).
int read_size(const io::ModelConfig& config, const std::string& key);
int read_size(const io::ModelConfig& config, const std::string& key, int fallback);

// layer_types as a list of strings (empty when absent).
std::vector<std::string> read_layer_types(const io::ModelConfig& config);

}  // namespace ft::models
