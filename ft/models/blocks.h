// The shared blocks every family is built from (ft/models/families/*.cpp): attention
// (grouped-query heads, separate or fused projections, q/k norms, partial and scaled
// rotary embeddings, sliding windows, soft-capped scores), gated and plain MLPs, norms
// and the decoder stack (embeddings, layers with gradient checkpointing, final norm).
// Each keeps Hugging Face's parameter names, which the specs below choose.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ft/core/random.h"
#include "ft/models/cache.h"
#include "ft/models/config.h"
#include "ft/models/rope.h"
#include "ft/nn/activations.h"
#include "ft/nn/module.h"

namespace ft::models {

// What each layer of a forward reads besides its input.
struct LayerInput {
  // The caller's mask, replacing the causal one: bool (true: may attend) or additive,
  // broadcastable to (batch, heads, length, keys), e.g. segment_causal_mask of packed rows.
  const std::optional<mx::array>& mask;
  LayerCache* cache = nullptr;  // this layer's, when decoding incrementally
  int offset = 0;               // the position of the input's first token
  // Mixture-of-experts layers add their router logits (tokens, experts) here.
  std::vector<mx::array>* router_logits = nullptr;
};

// One decoder layer: x (batch, length, hidden) -> same.
class Block : public nn::Module {
 public:
  virtual mx::array operator()(const mx::array& x, const LayerInput& in) = 0;
};

// A norm of `kind` over `dims` (ft/models/config.h).
std::shared_ptr<nn::Layer> make_norm(NormKind kind, int dims, float eps, mx::Dtype dtype);

// A Linear (out, in) with PyTorch's initialisation; `transposed` stores the weight
// (in, out), as GPT-2's Conv1D does.
std::shared_ptr<nn::Layer> make_linear(int in, int out, bool bias, Rng& rng, mx::Dtype dtype,
                                       bool transposed = false);

struct AttentionSpec {
  enum class Projections {
    separate,   // q_proj, k_proj, v_proj and the output projection
    fused_qkv,  // qkv_proj (q rows, then k, then v) and the output projection (Phi-3)
  };
  Projections projections = Projections::separate;
  std::string qkv_name = "qkv_proj";   // the fused projection's name (GPT-2: c_attn)
  std::string output_name = "o_proj";  // Phi-2: dense, LFM2: out_proj, GPT-2: c_proj
  bool qkv_bias = false;
  bool output_bias = false;
  bool transposed = false;  // weights stored (in, out) (GPT-2's Conv1D)
  // A norm of each query and key head over head_dim before the rotation, under these
  // names (Qwen3, Gemma 3: q_norm; Phi-2, LFM2: q_layernorm).
  std::optional<NormKind> qk_norm;
  std::string q_norm_name = "q_norm", k_norm_name = "k_norm";
  bool rotary = true;       // false: no rotary embedding (GPT-2's learned positions)
  float rope_base = 0.0f;   // 0: config.rope_theta
  bool rope_scaled = true;  // apply config.rope_scaling
  int window = 0;           // sliding window of this layer, 0: full causal
  float scale = 0.0f;       // 0: 1 / sqrt(head_dim)
  float softcap = 0.0f;     // > 0: scores -> softcap tanh(scores / softcap)
};

// Multi-head attention with grouped key/value heads, causal (and windowed).
class Attention : public nn::Module {
 public:
  Attention(const Config& config, const AttentionSpec& spec, Rng& rng, mx::Dtype dtype);
  std::string type_name() const override { return "Attention"; }
  // x: (batch, length, hidden) -> (batch, length, hidden). With a cache, x holds the
  // positions in.offset onwards: keys and values are appended to the cache and the
  // queries attend to everything stored, causally within x. A window applies on top of
  // the caller's mask.
  mx::array operator()(const mx::array& x, const LayerInput& in);

 private:
  AttentionSpec spec_;
  int n_heads_, n_kv_heads_, head_dim_;
  float scale_;
  std::optional<Rope> rope_;
  std::shared_ptr<nn::Layer> q_proj_, k_proj_, v_proj_, qkv_proj_, o_proj_;
  std::shared_ptr<nn::Layer> q_norm_, k_norm_;  // (head_dim,) norms; null without qk_norm
};

struct MlpSpec {
  enum class Kind {
    gated,        // down(act(gate(x)) * up(x))
    fused_gated,  // gate_up(x) = [gate | up] (Phi-3's gate_up_proj)
    plain,        // down(act(up(x))) (Phi-2's fc1/fc2, GPT-2's c_fc/c_proj)
  };
  Kind kind = Kind::gated;
  std::string gate_name = "gate_proj", up_name = "up_proj", down_name = "down_proj";
  std::string activation = "silu";  // a Hugging Face hidden_act name
  int intermediate = 0;             // 0: config.intermediate_size
  bool bias = false;
  bool transposed = false;
};

class Mlp : public nn::Module {
 public:
  Mlp(const Config& config, const MlpSpec& spec, Rng& rng, mx::Dtype dtype);
  std::string type_name() const override { return "Mlp"; }
  mx::array operator()(const mx::array& x);

 private:
  MlpSpec spec_;
  nn::Activation activation_;
  std::shared_ptr<nn::Layer> gate_proj_, up_proj_, down_proj_;
};

// A sparse mixture of gated MLP experts (Mixtral): a router "gate" (experts, hidden)
// picks each token's top k experts, whose outputs are summed with the router's
// probabilities renormalised over the k. The experts' weights are stacked under
// "experts": gate_up_proj (experts, 2 * intermediate, hidden), [gate | up] rows, and
// down_proj (experts, hidden, intermediate), as transformers 5 names them; each
// token's experts run through MLX's gathered matmul (mx::gather_mm, or mx::gather_qmm
// once quantized), not a loop. The experts are an nn::ExpertWeights: LoRA on
// "experts.gate_up_proj" / "experts.down_proj" in PEFT's target_parameters layout
// (nn/lora.h), quantized for QLoRA as models::quantize_model does the Linear layers.
class MoE : public nn::Module {
 public:
  MoE(const Config& config, Rng& rng, mx::Dtype dtype);
  std::string type_name() const override { return "MoE"; }
  // x (batch, length, hidden) -> same; the router logits (tokens, experts) are appended
  // to router_logits when given.
  mx::array operator()(const mx::array& x, std::vector<mx::array>* router_logits = nullptr);

 private:
  int top_k_;
  nn::Activation activation_;
  std::shared_ptr<nn::Layer> gate_;  // (experts, hidden)
  class Experts;
  std::shared_ptr<Experts> experts_;
};

// The decoder's stack without the output head ("model.*" in most checkpoints).
struct StackSpec {
  std::string embed_name = "embed_tokens";
  std::string positions_name;  // learned position embeddings (GPT-2: wpe); empty: none
  std::string layers_name = "layers";
  std::string norm_name = "norm";
  // The embeddings are multiplied by this, rounded to their dtype (Gemma: sqrt(hidden)).
  float embed_scale = 1.0f;
};

class Stack : public nn::Module {
 public:
  // make_layer(i) builds layer i, after the embeddings (so their random initialisation
  // draws from rng first).
  using LayerFactory = std::function<std::shared_ptr<Block>(int layer)>;
  Stack(const Config& config, const StackSpec& spec, const LayerFactory& make_layer, Rng& rng,
        mx::Dtype dtype);
  std::string type_name() const override { return "Stack"; }
  // ids: (batch, length) int -> hidden states (batch, length, hidden) after the final
  // norm. mask as in LayerInput; with a cache (one LayerCache per layer) the ids are the
  // positions cache->offset() onwards. Router logits of mixture-of-experts layers are
  // appended to router_logits when given.
  mx::array operator()(const mx::array& ids, const std::optional<mx::array>& mask = std::nullopt,
                       Cache* cache = nullptr, std::vector<mx::array>* router_logits = nullptr);

  int num_layers() const { return static_cast<int>(layers_->size()); }
  // An nn::Embedding, or an nn::QuantizedEmbedding in a quantized model.
  const std::shared_ptr<nn::Layer>& embed_tokens() const { return embed_tokens_; }
  const StackSpec& spec() const { return spec_; }

  // Recompute each layer's activations in the backward pass instead of keeping them.
  bool gradient_checkpointing = false;

 private:
  StackSpec spec_;
  std::shared_ptr<nn::Layer> embed_tokens_;
  int max_positions_;                            // rows of embed_positions_
  std::shared_ptr<nn::Layer> embed_positions_;  // (max_positions, hidden); null without
  std::shared_ptr<nn::ModuleList<Block>> layers_;
  std::shared_ptr<nn::Layer> norm_;
};

// The names of a pre-norm layer's parts: Llama's by default.
struct PreNormNames {
  std::string attention_norm = "input_layernorm";
  std::string attention = "self_attn";
  std::string mlp_norm = "post_attention_layernorm";
  std::string mlp = "mlp";
};

// A standard pre-norm decoder layer: h = x + attn(norm1(x)); out = h + mlp(norm2(h)).
class PreNormLayer : public Block {
 public:
  PreNormLayer(const Config& config, const AttentionSpec& attention, const MlpSpec& mlp, Rng& rng,
               mx::Dtype dtype, const PreNormNames& names = {});
  std::string type_name() const override { return "DecoderLayer"; }
  mx::array operator()(const mx::array& x, const LayerInput& in) override;

 private:
  std::shared_ptr<nn::Layer> input_layernorm_, post_attention_layernorm_;
  std::shared_ptr<Attention> self_attn_;
  std::shared_ptr<Mlp> mlp_;
};

}  // namespace ft::models
