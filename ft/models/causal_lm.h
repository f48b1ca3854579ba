// The causal language model every family builds (ft/models/families/*.cpp): a decoder
// Stack of the family's layers and an output head, lm_head or the tied embedding. What
// the trainer, the loss, generation, LoRA, fuse, adapters, the memory estimate and the
// benchmark use is here, so none of them names a family.
//
// Parameters keep their Hugging Face names: "<stack>.<embed>", "<stack>.<layers>.N.*",
// "<stack>.<norm>" and "lm_head" (model.embed_tokens, ..., or GPT-2's transformer.wte,
// transformer.h.N, transformer.ln_f).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ft/core/random.h"
#include "ft/models/blocks.h"
#include "ft/models/cache.h"
#include "ft/models/config.h"
#include "ft/nn/module.h"

namespace ft::models {

struct HeadSpec {
  std::string stack_name = "model";  // GPT-2: transformer
  bool bias = false;                 // lm_head.bias (Phi-2)
};

class CausalLM : public nn::Module {
 public:
  // Builds the stack (make_layer as in Stack) and, unless the embeddings are tied, an
  // lm_head (vocab, hidden). config.validate() is called first.
  CausalLM(const Config& config, const StackSpec& stack, const Stack::LayerFactory& make_layer,
           Rng& rng, mx::Dtype dtype = mx::float32, const HeadSpec& head = {});
  std::string type_name() const override { return "CausalLM"; }

  // ids: (batch, length) -> final hidden states (batch, length, hidden). mask, when
  // given, replaces the causal mask: bool (true: may attend) or additive, broadcastable
  // to (batch, heads, length, keys), e.g. segment_causal_mask(segment_ids) for packed
  // rows. With a cache, ids are the positions cache->offset() onwards and the cache is
  // updated (a mask must then cover every key: (.., length, offset + length)).
  mx::array hidden_states(const mx::array& ids, const std::optional<mx::array>& mask = std::nullopt,
                          Cache* cache = nullptr);
  // ids: (batch, length) -> logits (batch, length, vocab).
  mx::array operator()(const mx::array& ids, const std::optional<mx::array>& mask = std::nullopt);
  // Incremental decoding: the logits of ids at positions cache.offset() onwards, equal to
  // those the whole sequence would give there (Dynamic NTK and longrope rotations, as in
  // Hugging Face with a cache, depend on the positions seen so far).
  mx::array forward(const mx::array& ids, Cache& cache,
                    const std::optional<mx::array>& mask = std::nullopt);
  // > 0 when the rotary frequencies change once a sequence grows past this many
  // positions (longrope's switch to its long factors): keys cached before then were
  // rotated with the short ones, so a cache must be rebuilt from the whole sequence
  // when it crosses (as transformers' Phi-3 generation does). 0 otherwise.
  int rope_switch_length() const;
  // A cache for this model, growing by `step` positions.
  Cache make_cache(int step = 256) const { return Cache(config_.num_hidden_layers, step); }

  // The output projection's weight (vocab, hidden): lm_head or the tied embedding,
  // dequantized (lazily, in the scales' dtype) when that layer is quantized. Throws
  // ft::Error when lm_head carries an adapter.
  mx::array output_weight() const;
  // The parameter output_weight() reads: "lm_head.weight" or the tied embedding's.
  std::string output_weight_name() const;
  // lm_head's bias (vocab,), when it has one.
  std::optional<mx::array> output_bias() const;
  // Logits are softcap tanh(z / softcap) when this is > 0 (Gemma 2).
  float logit_softcap() const { return config_.final_logit_softcapping; }
  // hidden (..., hidden) -> logits (..., vocab) through lm_head or the tied embedding
  // (a quantized head multiplies through nn::quantized_matmul_t), soft-capped.
  mx::array output_logits(const mx::array& hidden) const;

  // Mixture-of-experts families: the router's load-balancing loss (Switch Transformer's,
  // as Hugging Face computes it over all layers) of the last hidden_states call without
  // a cache, times config.router_aux_loss_coef; nullopt for other families or when the
  // coefficient is 0.
  std::optional<mx::array> auxiliary_loss() const { return auxiliary_loss_; }
  // Sets the coefficient (0: no auxiliary loss). Throws ft::Error for a model without
  // experts.
  void set_router_aux_loss(float coef);

  // Parameter names of the token (and position) embeddings: what "embedding parameters"
  // count in summaries and FLOPs.
  bool is_embedding_parameter(const std::string& name) const;

  void set_gradient_checkpointing(bool on) { stack_->gradient_checkpointing = on; }
  const Config& config() const { return config_; }
  Stack& stack() { return *stack_; }
  const Stack& stack() const { return *stack_; }

 private:
  Config config_;
  HeadSpec head_spec_;
  std::shared_ptr<Stack> stack_;
  // (vocab, hidden): an nn::Linear, or an nn::QuantizedLinear in a quantized model;
  // null when tied.
  std::shared_ptr<nn::Layer> lm_head_;
  std::optional<mx::array> auxiliary_loss_;
};

// Model FLOPs of one token's forward pass at sequence length seq (Note [Model FLOPs per
// token] in causal_lm.cpp).
struct TokenFlops {
  double weights = 0;    // 2 per parameter outside the embeddings and adapters
  double head = 0;       // the output projection
  double attention = 0;  // QK^T and PV over the keys each query sees
  double forward() const { return weights + head + attention; }
};
TokenFlops flops_per_token(const CausalLM& model, int seq);

// Switch Transformer's load-balancing loss over router logits (tokens, experts) of every
// layer, each routing its top k: experts * sum_e (share of the top-k slots sent to e) *
// (mean router probability of e), as transformers' load_balancing_loss_func (no padding
// mask).
mx::array load_balancing_loss(const std::vector<mx::array>& router_logits, int top_k);

}  // namespace ft::models
