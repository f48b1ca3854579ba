#include "ft/models/causal_lm.h"

#include <cmath>

#include <mlx/ops.h>

#include "ft/nn/embedding.h"
#include "ft/nn/linear.h"
#include "ft/nn/quantized_linear.h"

namespace ft::models {

CausalLM::CausalLM(const Config& config, const StackSpec& stack,
                   const Stack::LayerFactory& make_layer, Rng& rng, mx::Dtype dtype,
                   const HeadSpec& head)
    : config_(config), head_spec_(head) {
  config_.validate();
  stack_ = std::make_shared<Stack>(config_, stack, make_layer, rng, dtype);
  register_module(head.stack_name, &stack_);
  if (!config_.tie_word_embeddings) {
    lm_head_ = std::make_shared<nn::Linear>(config_.hidden_size, config_.vocab_size, head.bias,
                                            rng.next(), dtype);
    register_module("lm_head", &lm_head_);
  }
}

mx::array CausalLM::hidden_states(const mx::array& ids, const std::optional<mx::array>& mask,
                                  Cache* cache) {
  const bool routed = config_.num_experts > 0 && config_.router_aux_loss_coef > 0 && !cache;
  std::vector<mx::array> router_logits;
  mx::array hidden = (*stack_)(ids, mask, cache, routed ? &router_logits : nullptr);
  auxiliary_loss_.reset();
  if (routed && !router_logits.empty())
    auxiliary_loss_ = load_balancing_loss(router_logits, config_.num_experts_per_tok) *
                      config_.router_aux_loss_coef;
  return hidden;
}

void CausalLM::set_router_aux_loss(float coef) {
  FT_CHECK(config_.num_experts > 0, "model", "a ", config_.model_type,
           " model has no router: the router's auxiliary loss applies to mixture-of-experts "
           "models");
  FT_CHECK(coef >= 0 && std::isfinite(coef), "model",
           "the router's auxiliary loss weight must be finite and not negative, got ", coef);
  config_.router_aux_loss_coef = coef;
}

mx::array CausalLM::operator()(const mx::array& ids, const std::optional<mx::array>& mask) {
  return output_logits(hidden_states(ids, mask));
}

mx::array CausalLM::forward(const mx::array& ids, Cache& cache,
                            const std::optional<mx::array>& mask) {
  return output_logits(hidden_states(ids, mask, &cache));
}

mx::array CausalLM::output_weight() const {
  const nn::Module* head = lm_head_ ? static_cast<const nn::Module*>(lm_head_.get())
                                    : static_cast<const nn::Module*>(stack_->embed_tokens().get());
  if (auto* linear = dynamic_cast<const nn::Linear*>(head)) return linear->weight_out_in();
  if (auto* quantized = dynamic_cast<const nn::QuantizedLinear*>(head))
    return quantized->dequantized_weight();
  if (auto* embedding = dynamic_cast<const nn::Embedding*>(head)) return embedding->weight();
  if (auto* quantized = dynamic_cast<const nn::QuantizedEmbedding*>(head))
    return quantized->dequantized_weight();
  throw Error("model", "the output head is a " + head->type_name() +
                           ", which has no single weight matrix (adapters on lm_head are not "
                           "supported)");
}

int CausalLM::rope_switch_length() const {
  const RopeScaling& r = config_.rope_scaling;
  return r.type == RopeScaling::Type::longrope ? r.original_max_position_embeddings : 0;
}

std::string CausalLM::output_weight_name() const {
  if (lm_head_) return "lm_head.weight";
  return head_spec_.stack_name + "." + stack_->spec().embed_name + ".weight";
}

std::optional<mx::array> CausalLM::output_bias() const {
  if (!lm_head_) return std::nullopt;
  if (auto* linear = dynamic_cast<const nn::Linear*>(lm_head_.get())) return linear->bias();
  if (auto* quantized = dynamic_cast<const nn::QuantizedLinear*>(lm_head_.get()))
    return quantized->bias();
  return std::nullopt;
}

mx::array CausalLM::output_logits(const mx::array& hidden) const {
  mx::array logits = mx::array(0.0f);
  if (lm_head_) {
    logits = (*lm_head_)(hidden);
  } else if (auto* quantized =
                 dynamic_cast<const nn::QuantizedEmbedding*>(stack_->embed_tokens().get())) {
    logits = quantized->as_linear(hidden);
  } else {
    logits = mx::matmul(hidden, mx::transpose(output_weight()));
  }
  float cap = logit_softcap();
  if (cap > 0) logits = mx::tanh(logits / cap) * cap;
  return logits;
}

bool CausalLM::is_embedding_parameter(const std::string& name) const {
  const std::string prefix = head_spec_.stack_name + ".";
  const StackSpec& s = stack_->spec();
  for (const std::string* part : {&s.embed_name, &s.positions_name})
    if (!part->empty() && name.starts_with(prefix + *part + ".")) return true;
  return false;
}

// Note [Model FLOPs per token]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// The formula of ../shared/bench/hf_baseline.py, so that MFU figures divide the same
// work:
//   N     parameters outside the embeddings (an untied lm_head counts here as well as in
//         `head`, as in the baseline); of a mixture of experts' expert weights, the share
//         a token runs (k of E)
//   head  2 h V           the output projection's matmul
//   attn  2 * 2 q k       QK^T and PV for each attention layer, q = heads * head_dim,
//                         k the keys a query sees on average: s / 2 over a causal
//                         square, w (1 - w / 2s) within a window w < s
//   fwd   2 N + head + attn
// Short-convolution layers (LFM2) have no attention term; their products are in N.
TokenFlops flops_per_token(const CausalLM& model, int seq) {
  const Config& c = model.config();
  double n = 0;
  double expert_share =
      c.num_experts > 0 ? double(c.num_experts_per_tok) / double(c.num_experts) : 1.0;
  for (const auto& [name, value] : model.parameters()) {
    if (model.is_embedding_parameter(name) || name.find(".lora_") != std::string::npos) continue;
    n += value.size() * (name.find(".experts.") != std::string::npos ? expert_share : 1.0);
  }
  double head = 2.0 * c.hidden_size * c.vocab_size;
  double q = double(c.num_attention_heads) * c.resolved_head_dim();
  double attn = 0;
  for (int i = 0; i < c.num_hidden_layers; ++i) {
    if (c.layer_is(i, "conv")) continue;
    double w = c.window_of_layer(i);
    double keys = (w > 0 && w < seq) ? w * (1 - w / (2.0 * seq)) : seq / 2.0;
    attn += 2.0 * 2.0 * q * keys;
  }
  return TokenFlops{2 * n, head, attn};
}

mx::array load_balancing_loss(const std::vector<mx::array>& router_logits, int top_k) {
  mx::array logits = mx::astype(mx::concatenate(router_logits, 0), mx::float32);  // (T, E)
  int experts = logits.shape(-1);
  mx::array probs = mx::softmax(logits, -1);
  // The top k experts of each token; which ones carries no gradient.
  mx::array chosen =
      mx::slice(mx::argpartition(mx::negative(mx::stop_gradient(probs)), top_k - 1, -1), {0, 0},
                {probs.shape(0), top_k});  // (T, k)
  mx::array one_hot =
      mx::equal(mx::expand_dims(chosen, -1), mx::arange(experts, chosen.dtype()));  // (T, k, E)
  mx::array routed_share = mx::mean(mx::astype(one_hot, mx::float32), 0);           // (k, E)
  mx::array mean_prob = mx::mean(probs, 0);                                         // (E,)
  return mx::sum(routed_share * mean_prob) * static_cast<float>(experts);
}

}  // namespace ft::models
