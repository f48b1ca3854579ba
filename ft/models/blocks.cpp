#include "ft/models/blocks.h"

#include <cmath>
#include <limits>
#include <string>
#include <tuple>

#include <mlx/ops.h>

#include "ft/kernels/attention.h"
#include "ft/kernels/swiglu.h"
#include "ft/nn/checkpoint.h"
#include "ft/nn/embedding.h"
#include "ft/nn/experts.h"
#include "ft/nn/init.h"
#include "ft/nn/linear.h"
#include "ft/nn/norm.h"

namespace ft::models {

namespace {

// (length, offset + length) bool for queries at positions offset .. offset + length - 1:
// query i sees keys j <= i, and with a window only those with i - window < j.
mx::array causal_mask(int length, int offset, int window) {
  mx::array rows = mx::reshape(mx::arange(offset, offset + length, mx::int32), {length, 1});
  mx::array cols = mx::reshape(mx::arange(offset + length, mx::int32), {1, offset + length});
  mx::array mask = mx::less_equal(cols, rows);
  if (window > 0) mask = mx::logical_and(mask, mx::greater(cols, rows - window));
  return mask;
}

// softmax(softcap tanh(scale q k^T / softcap) + mask) v, with grouped key heads, from
// plain ops (Gemma 2's capped scores have no fused kernel). q (B, Hq, L, D), k and v
// (B, Hkv, K, D); mask bool or additive, broadcastable to (B, Hq, L, K); nullopt: none.
mx::array capped_attention(const mx::array& q, const mx::array& k, const mx::array& v, float scale,
                           float softcap, const std::optional<mx::array>& mask) {
  int batch = q.shape(0), heads = q.shape(1), length = q.shape(2), dim = q.shape(3);
  int kv_heads = k.shape(1), keys = k.shape(2);
  int group = heads / kv_heads;
  // (B, Hkv, group * L, D): the queries of one key head side by side.
  mx::array grouped = mx::reshape(q, {batch, kv_heads, group * length, dim});
  mx::array scores = mx::matmul(grouped * mx::array(scale, q.dtype()), mx::swapaxes(k, -1, -2));
  scores = mx::reshape(scores, {batch, heads, length, keys});
  scores = mx::astype(scores, mx::float32);
  scores = mx::tanh(scores / softcap) * softcap;
  if (mask) {
    if (mask->dtype() == mx::bool_)
      scores = mx::where(*mask, scores, mx::array(-std::numeric_limits<float>::infinity()));
    else
      scores = scores + mx::astype(*mask, mx::float32);
  }
  mx::array probs = mx::astype(mx::softmax(scores, -1), q.dtype());
  probs = mx::reshape(probs, {batch, kv_heads, group * length, keys});
  return mx::reshape(mx::matmul(probs, v), {batch, heads, length, dim});
}

}  // namespace

std::shared_ptr<nn::Layer> make_norm(NormKind kind, int dims, float eps, mx::Dtype dtype) {
  switch (kind) {
    case NormKind::rms:
      return std::make_shared<nn::RMSNorm>(dims, eps, dtype);
    case NormKind::rms_plus_one:
      return std::make_shared<nn::RMSNorm>(dims, eps, dtype, /*unit_offset=*/true);
    case NormKind::layer:
      return std::make_shared<nn::LayerNorm>(dims, eps, /*affine=*/true, /*bias=*/true, dtype);
  }
  throw Error("blocks", "unknown norm kind");
}

std::shared_ptr<nn::Layer> make_linear(int in, int out, bool bias, Rng& rng, mx::Dtype dtype,
                                       bool transposed) {
  return std::make_shared<nn::Linear>(in, out, bias, rng.next(), dtype, transposed);
}

Attention::Attention(const Config& config, const AttentionSpec& spec, Rng& rng, mx::Dtype dtype)
    : spec_(spec),
      n_heads_(config.num_attention_heads),
      n_kv_heads_(config.num_key_value_heads),
      head_dim_(config.resolved_head_dim()) {
  int hidden = config.hidden_size;
  int q_size = n_heads_ * head_dim_, kv_size = n_kv_heads_ * head_dim_;
  bool t = spec.transposed;
  if (spec.projections == AttentionSpec::Projections::fused_qkv) {
    qkv_proj_ = make_linear(hidden, q_size + 2 * kv_size, spec.qkv_bias, rng, dtype, t);
    register_module(spec.qkv_name, &qkv_proj_);
  } else {
    q_proj_ = make_linear(hidden, q_size, spec.qkv_bias, rng, dtype, t);
    k_proj_ = make_linear(hidden, kv_size, spec.qkv_bias, rng, dtype, t);
    v_proj_ = make_linear(hidden, kv_size, spec.qkv_bias, rng, dtype, t);
    register_module("q_proj", &q_proj_);
    register_module("k_proj", &k_proj_);
    register_module("v_proj", &v_proj_);
  }
  o_proj_ = make_linear(q_size, hidden, spec.output_bias, rng, dtype, t);
  register_module(spec.output_name, &o_proj_);
  if (spec.qk_norm) {
    q_norm_ = make_norm(*spec.qk_norm, head_dim_, config.norm_eps, dtype);
    k_norm_ = make_norm(*spec.qk_norm, head_dim_, config.norm_eps, dtype);
    register_module(spec.q_norm_name, &q_norm_);
    register_module(spec.k_norm_name, &k_norm_);
  }
  if (spec.rotary)
    rope_.emplace(config, spec.rope_base > 0 ? spec.rope_base : config.rope_theta,
                  spec.rope_scaled);
  scale_ = spec.scale > 0 ? spec.scale : 1.0f / std::sqrt(static_cast<float>(head_dim_));
}

mx::array Attention::operator()(const mx::array& x, const LayerInput& in) {
  int batch = x.shape(0), length = x.shape(1);
  int offset = in.offset;
  int keys = offset + length;
  int q_size = n_heads_ * head_dim_, kv_size = n_kv_heads_ * head_dim_;
  mx::array q = mx::array(0.0f), k = q, v = q;
  if (qkv_proj_) {
    mx::array qkv = (*qkv_proj_)(x);  // (B, L, q + 2 kv)
    auto parts = mx::split(qkv, mx::Shape{q_size, q_size + kv_size}, -1);
    q = parts[0], k = parts[1], v = parts[2];
  } else {
    q = (*q_proj_)(x), k = (*k_proj_)(x), v = (*v_proj_)(x);
  }
  // (B, L, n * D) -> (B, L, n, D)
  q = mx::reshape(q, {batch, length, n_heads_, head_dim_});
  k = mx::reshape(k, {batch, length, n_kv_heads_, head_dim_});
  v = mx::reshape(v, {batch, length, n_kv_heads_, head_dim_});
  if (q_norm_) {
    q = (*q_norm_)(q);
    k = (*k_norm_)(k);
  }
  // (B, n, L, D)
  q = mx::transpose(q, {0, 2, 1, 3});
  k = mx::transpose(k, {0, 2, 1, 3});
  v = mx::transpose(v, {0, 2, 1, 3});
  if (rope_) {
    q = (*rope_)(q, offset);
    k = (*rope_)(k, offset);
  }
  if (in.cache) std::tie(k, v) = in.cache->update(k, v);

  // The mask: the caller's, else causal; a window that some query exceeds restricts
  // either. A single new token without a window sees every key, so needs none.
  const std::optional<mx::array>& mask = in.mask;
  int window = spec_.window;
  bool windowed = window > 0 && keys > window;
  std::string mode;
  std::optional<mx::array> array_mask;
  if (mask) {
    FT_CHECK(mask->ndim() >= 2 && mask->shape(-1) == keys && mask->shape(-2) == length, "attention",
             "attention mask must end in (", length, ", ", keys, "), got ",
             mask->ndim() >= 2
                 ? std::to_string(mask->shape(-2)) + ", " + std::to_string(mask->shape(-1))
                 : std::to_string(mask->ndim()) + "-D");
    array_mask = *mask;
    if (windowed) {
      mx::array allowed = causal_mask(length, offset, window);
      array_mask =
          mask->dtype() == mx::bool_
              ? mx::logical_and(*mask, allowed)
              : mx::where(allowed, *mask,
                          mx::array(-std::numeric_limits<float>::infinity(), mask->dtype()));
    }
    mode = "array";
  } else if (windowed || (length > 1 && offset > 0) || (spec_.softcap > 0 && length > 1)) {
    array_mask = causal_mask(length, offset, windowed ? window : 0);
    mode = "array";
  } else if (length > 1) {
    mode = "causal";
  }
  mx::array out = spec_.softcap > 0 ? capped_attention(q, k, v, scale_, spec_.softcap, array_mask)
                                    : kernels::attention(q, k, v, scale_, mode, array_mask);
  out = mx::reshape(mx::transpose(out, {0, 2, 1, 3}), {batch, length, q_size});
  return (*o_proj_)(out);
}

Mlp::Mlp(const Config& config, const MlpSpec& spec, Rng& rng, mx::Dtype dtype)
    : spec_(spec), activation_(nn::activation_by_name(spec.activation)) {
  int hidden = config.hidden_size;
  int inner = spec.intermediate > 0 ? spec.intermediate : config.intermediate_size;
  bool t = spec.transposed;
  switch (spec.kind) {
    case MlpSpec::Kind::gated:
      gate_proj_ = make_linear(hidden, inner, spec.bias, rng, dtype, t);
      up_proj_ = make_linear(hidden, inner, spec.bias, rng, dtype, t);
      register_module(spec.gate_name, &gate_proj_);
      register_module(spec.up_name, &up_proj_);
      break;
    case MlpSpec::Kind::fused_gated:
      up_proj_ = make_linear(hidden, 2 * inner, spec.bias, rng, dtype, t);
      register_module(spec.up_name, &up_proj_);
      break;
    case MlpSpec::Kind::plain:
      up_proj_ = make_linear(hidden, inner, spec.bias, rng, dtype, t);
      register_module(spec.up_name, &up_proj_);
      break;
  }
  down_proj_ = make_linear(inner, hidden, spec.bias, rng, dtype, t);
  register_module(spec.down_name, &down_proj_);
}

mx::array Mlp::operator()(const mx::array& x) {
  const bool silu = spec_.activation == "silu" || spec_.activation == "swish";
  auto gated = [&](const mx::array& gate, const mx::array& up) {
    return silu ? kernels::swiglu(gate, up) : activation_(gate) * up;
  };
  switch (spec_.kind) {
    case MlpSpec::Kind::gated:
      return (*down_proj_)(gated((*gate_proj_)(x), (*up_proj_)(x)));
    case MlpSpec::Kind::fused_gated: {
      auto halves = mx::split((*up_proj_)(x), 2, -1);  // [gate | up]
      return (*down_proj_)(gated(halves[0], halves[1]));
    }
    case MlpSpec::Kind::plain:
      return (*down_proj_)(activation_((*up_proj_)(x)));
  }
  throw Error("mlp", "unknown MLP kind");
}

// The stacked expert weights, as transformers 5 names them: "gate_up_proj"
// (experts, 2 * intermediate, hidden), [gate | up] rows, and "down_proj"
// (experts, hidden, intermediate).
class MoE::Experts : public nn::ExpertWeights {
 public:
  Experts(const Config& c, Rng& rng, mx::Dtype dtype) {
    int e = c.num_experts, h = c.hidden_size, i = c.intermediate_size;
    add_stacked("gate_up_proj", nn::StackedWeight::floats(nn::init::uniform_fan_in(
                                    {e, 2 * i, h}, h, rng.next(), dtype)));
    add_stacked("down_proj", nn::StackedWeight::floats(
                                 nn::init::uniform_fan_in({e, h, i}, i, rng.next(), dtype)));
  }
  std::string type_name() const override { return "Experts"; }
};

MoE::MoE(const Config& config, Rng& rng, mx::Dtype dtype)
    : top_k_(config.num_experts_per_tok), activation_(nn::activation_by_name(config.hidden_act)) {
  gate_ = make_linear(config.hidden_size, config.num_experts, false, rng, dtype);
  experts_ = std::make_shared<Experts>(config, rng, dtype);
  register_module("gate", &gate_);
  register_module("experts", &experts_);
}

mx::array MoE::operator()(const mx::array& x, std::vector<mx::array>* router_logits) {
  mx::Shape shape = x.shape();
  int hidden = shape.back();
  mx::array tokens = mx::reshape(x, {-1, hidden});  // (T, H)
  mx::array logits = (*gate_)(tokens);              // (T, E)
  if (router_logits) router_logits->push_back(logits);
  mx::array probs = mx::softmax(mx::astype(logits, mx::float32), -1);
  int t = tokens.shape(0);
  // The top k experts of each token (in no particular order: their outputs are summed).
  mx::array chosen =
      mx::slice(mx::argpartition(mx::negative(mx::stop_gradient(probs)), top_k_ - 1, -1), {0, 0},
                {t, top_k_});                                  // (T, k)
  mx::array weights = mx::take_along_axis(probs, chosen, -1);  // (T, k)
  weights = mx::astype(weights / mx::sum(weights, -1, true), x.dtype());
  // Note [Experts in sorted rows]: the T k (token, expert) pairs sorted by expert, so each
  // expert's rows are contiguous, then put back in token order. gather_mm's sorted path
  // is a grouped product, and on MLX 0.32.4's CUDA backend the only one that runs: the
  // unsorted path fails there from 8 experts of 128 x 256 up ("cuGraphAddKernelNode ...
  // invalid argument"); the grouped one runs float32 as TF32 (3e-4 relative error).
  // The adapters' products (nn::ExpertLoRA) take the same sorted rows.
  mx::array pairs = mx::reshape(chosen, {-1});        // (T k,)
  mx::array order = mx::argsort(pairs);               // (T k,)
  mx::array back = mx::argsort(order);                // (T k,)
  mx::array sorted_experts = mx::take(pairs, order);  // (T k,)
  mx::array rows = mx::take(tokens, mx::floor_divide(order, mx::array(top_k_, order.dtype())),
                            0);              // (T k, H)
  mx::array in = mx::expand_dims(rows, -2);  // (T k, 1, H)
  mx::array gate_up =
      experts_->project("gate_up_proj", in, sorted_experts, /*sorted=*/true);  // (T k, 1, 2I)
  auto halves = mx::split(gate_up, 2, -1);
  mx::array inner = activation_(halves[0]) * halves[1];
  mx::array out =
      experts_->project("down_proj", inner, sorted_experts, /*sorted=*/true);  // (T k, 1, H)
  out = mx::reshape(mx::take(mx::squeeze(out, -2), back, 0), {t, top_k_, hidden});  // (T, k, H)
  out = mx::sum(out * mx::expand_dims(weights, -1), 1);                             // (T, H)
  return mx::reshape(out, shape);
}

Stack::Stack(const Config& config, const StackSpec& spec, const LayerFactory& make_layer, Rng& rng,
             mx::Dtype dtype)
    : spec_(spec), max_positions_(config.max_position_embeddings) {
  // Small embeddings keep the first logits near uniform when the head is tied.
  embed_tokens_ = std::make_shared<nn::Embedding>(nn::init::normal(
      {config.vocab_size, config.hidden_size}, config.initializer_range, rng.next(), dtype));
  register_module(spec.embed_name, &embed_tokens_);
  if (!spec.positions_name.empty()) {
    embed_positions_ = std::make_shared<nn::Embedding>(
        nn::init::normal({config.max_position_embeddings, config.hidden_size},
                         config.initializer_range, rng.next(), dtype));
    register_module(spec.positions_name, &embed_positions_);
  }
  layers_ = std::make_shared<nn::ModuleList<Block>>();
  for (int i = 0; i < config.num_hidden_layers; ++i) layers_->push_back(make_layer(i));
  register_module(spec.layers_name, &layers_);
  norm_ = make_norm(config.norm, config.hidden_size, config.norm_eps, dtype);
  register_module(spec.norm_name, &norm_);
}

mx::array Stack::operator()(const mx::array& ids, const std::optional<mx::array>& mask,
                            Cache* cache, std::vector<mx::array>* router_logits) {
  FT_CHECK(ids.ndim() == 2, "model", "input ids must be (batch, length), got ", ids.ndim(), "-D");
  if (cache)
    FT_CHECK(cache->num_layers() == num_layers(), "model", "the cache has ", cache->num_layers(),
             " layers, the model ", num_layers());
  int offset = cache ? cache->offset() : 0;
  int length = ids.shape(1);
  mx::array h = (*embed_tokens_)(ids);
  if (spec_.embed_scale != 1.0f) h = h * mx::array(spec_.embed_scale, h.dtype());
  if (embed_positions_) {
    FT_CHECK(offset + length <= max_positions_, "model", "position ", offset + length - 1,
             " is past the model's ", max_positions_, " learned positions");
    h = h + (*embed_positions_)(mx::arange(offset, offset + length, mx::int32));
  }
  for (int i = 0; i < num_layers(); ++i) {
    Block& layer = (*layers_)[i];
    LayerInput in{mask, cache ? &cache->layer(i) : nullptr, offset, router_logits};
    if (gradient_checkpointing && training() && !cache) {
      // The mask is a constant of the data (no gradient), so the closure holds it; router
      // logits leave the checkpoint as extra outputs.
      auto run = [&layer, mask, offset,
                  collect = router_logits != nullptr](const std::vector<mx::array>& inputs) {
        std::vector<mx::array> logits;
        LayerInput inner{mask, nullptr, offset, collect ? &logits : nullptr};
        std::vector<mx::array> out{layer(inputs[0], inner)};
        out.insert(out.end(), logits.begin(), logits.end());
        return out;
      };
      std::vector<mx::array> out = nn::checkpoint(layer, run)({h});
      h = out[0];
      if (router_logits) router_logits->insert(router_logits->end(), out.begin() + 1, out.end());
    } else {
      h = layer(h, in);
    }
  }
  if (cache) cache->advance(length);
  return (*norm_)(h);
}

PreNormLayer::PreNormLayer(const Config& config, const AttentionSpec& attention, const MlpSpec& mlp,
                           Rng& rng, mx::Dtype dtype, const PreNormNames& names) {
  input_layernorm_ = make_norm(config.norm, config.hidden_size, config.norm_eps, dtype);
  self_attn_ = std::make_shared<Attention>(config, attention, rng, dtype);
  post_attention_layernorm_ = make_norm(config.norm, config.hidden_size, config.norm_eps, dtype);
  mlp_ = std::make_shared<Mlp>(config, mlp, rng, dtype);
  register_module(names.attention_norm, &input_layernorm_);
  register_module(names.attention, &self_attn_);
  register_module(names.mlp_norm, &post_attention_layernorm_);
  register_module(names.mlp, &mlp_);
}

mx::array PreNormLayer::operator()(const mx::array& x, const LayerInput& in) {
  mx::array h = x + (*self_attn_)((*input_layernorm_)(x), in);
  return h + (*mlp_)((*post_attention_layernorm_)(h));
}

}  // namespace ft::models
