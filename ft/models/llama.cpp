#include "ft/models/llama.h"

#include <cmath>
#include <limits>
#include <string>
#include <tuple>

#include <mlx/fast.h>
#include <mlx/ops.h>

#include "ft/generate/kv_cache.h"
#include "ft/kernels/attention.h"
#include "ft/kernels/swiglu.h"
#include "ft/nn/checkpoint.h"
#include "ft/nn/init.h"
#include "ft/nn/quantized_linear.h"

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
  FT_CHECK(sliding_window >= 0, "config", "sliding_window must not be negative, got ",
           sliding_window);
  FT_CHECK(layer_types.empty() || static_cast<int>(layer_types.size()) == num_hidden_layers,
           "config", "layer_types has ", layer_types.size(), " entries for ", num_hidden_layers,
           " layers");
  for (const std::string& type : layer_types)
    FT_CHECK(type == "full_attention" || type == "sliding_attention", "config",
             "unknown layer type '", type, "' (known: full_attention, sliding_attention)");
  if (rope_scaling.type != RopeScaling::Type::none)
    FT_CHECK(rope_scaling.factor > 0, "config", "rope_scaling factor must be positive, got ",
             rope_scaling.factor);
  if (rope_scaling.type == RopeScaling::Type::llama3)
    FT_CHECK(rope_scaling.high_freq_factor > rope_scaling.low_freq_factor &&
                 rope_scaling.low_freq_factor > 0 &&
                 rope_scaling.original_max_position_embeddings > 0,
             "config",
             "llama3 rope_scaling needs high_freq_factor > low_freq_factor > 0 and a positive "
             "original_max_position_embeddings");
  if (rope_scaling.type == RopeScaling::Type::dynamic)
    FT_CHECK(max_position_embeddings > 0, "config",
             "dynamic rope_scaling needs a positive max_position_embeddings");
}

int LlamaConfig::window_of_layer(int layer) const {
  if (sliding_window == 0) return 0;
  if (layer_types.empty()) return sliding_window;
  return layer_types.at(layer) == "sliding_attention" ? sliding_window : 0;
}

namespace {

std::shared_ptr<nn::Layer> linear(int in, int out, bool bias, Rng& rng, mx::Dtype dtype) {
  return std::make_shared<nn::Linear>(in, out, bias, rng.next(), dtype);
}

// Llama 3's rotary periods (1 / inverse frequency) for each pair of dimensions: long
// wavelengths are stretched by factor, short ones kept, the band between interpolated.
mx::array llama3_rope_periods(int head_dim, float theta, const RopeScaling& scaling) {
  const double pi = 3.14159265358979323846;
  double context = scaling.original_max_position_embeddings;
  double low_wavelength = context / scaling.low_freq_factor;
  double high_wavelength = context / scaling.high_freq_factor;
  std::vector<float> periods;
  for (int i = 0; i < head_dim; i += 2) {
    double inv_freq = 1.0 / std::pow(static_cast<double>(theta), static_cast<double>(i) / head_dim);
    double wavelength = 2 * pi / inv_freq;
    double scaled = inv_freq;
    if (wavelength > low_wavelength) {
      scaled = inv_freq / scaling.factor;
    } else if (wavelength >= high_wavelength) {
      double smooth = (context / wavelength - scaling.low_freq_factor) /
                      (scaling.high_freq_factor - scaling.low_freq_factor);
      scaled = (1 - smooth) * inv_freq / scaling.factor + smooth * inv_freq;
    }
    periods.push_back(static_cast<float>(1.0 / scaled));
  }
  int n = static_cast<int>(periods.size());
  return mx::array(periods.data(), {n}, mx::float32);
}

// (length, offset + length) bool for queries at positions offset .. offset + length - 1:
// query i sees keys j <= i, and with a window only those with i - window < j.
mx::array causal_mask(int length, int offset, int window) {
  mx::array rows = mx::reshape(mx::arange(offset, offset + length, mx::int32), {length, 1});
  mx::array cols = mx::reshape(mx::arange(offset + length, mx::int32), {1, offset + length});
  mx::array mask = mx::less_equal(cols, rows);
  if (window > 0) mask = mx::logical_and(mask, mx::greater(cols, rows - window));
  return mask;
}

}  // namespace

Attention::Attention(const LlamaConfig& config, Rng& rng, mx::Dtype dtype, int window)
    : n_heads_(config.num_attention_heads),
      n_kv_heads_(config.num_key_value_heads),
      head_dim_(config.resolved_head_dim()),
      window_(window),
      rope_theta_(config.rope_theta),
      rope_scaling_(config.rope_scaling),
      max_position_embeddings_(config.max_position_embeddings) {
  int hidden = config.hidden_size;
  bool qkv_bias = config.attention_bias || config.qkv_bias;
  q_proj_ = linear(hidden, n_heads_ * head_dim_, qkv_bias, rng, dtype);
  k_proj_ = linear(hidden, n_kv_heads_ * head_dim_, qkv_bias, rng, dtype);
  v_proj_ = linear(hidden, n_kv_heads_ * head_dim_, qkv_bias, rng, dtype);
  o_proj_ = linear(n_heads_ * head_dim_, hidden, config.attention_bias, rng, dtype);
  register_module("q_proj", &q_proj_);
  register_module("k_proj", &k_proj_);
  register_module("v_proj", &v_proj_);
  register_module("o_proj", &o_proj_);
  if (config.qk_norm) {
    q_norm_ = std::make_shared<nn::RMSNorm>(head_dim_, config.rms_norm_eps, dtype);
    k_norm_ = std::make_shared<nn::RMSNorm>(head_dim_, config.rms_norm_eps, dtype);
    register_module("q_norm", &q_norm_);
    register_module("k_norm", &k_norm_);
  }
  if (rope_scaling_.type == RopeScaling::Type::llama3)
    rope_periods_ = llama3_rope_periods(head_dim_, rope_theta_, rope_scaling_);
}

mx::array Attention::rotate(const mx::array& x, int offset) const {
  using Type = RopeScaling::Type;
  if (rope_periods_)
    return mx::fast::rope(x, head_dim_, false, std::nullopt, 1.0f, offset, rope_periods_);
  float base = rope_theta_;
  float position_scale = 1.0f;
  if (rope_scaling_.type == Type::linear) position_scale = 1.0f / rope_scaling_.factor;
  int length = offset + x.shape(2);  // positions seen, this chunk included
  if (rope_scaling_.type == Type::dynamic && length > max_position_embeddings_) {
    // NTK-aware scaling as Hugging Face computes it from the largest position of the
    // forward pass: the base grows with the length past max_position_embeddings, and
    // shorter sequences use plain RoPE.
    double factor = rope_scaling_.factor;
    double ratio = factor * length / max_position_embeddings_ - (factor - 1);
    base = static_cast<float>(rope_theta_ *
                              std::pow(ratio, static_cast<double>(head_dim_) / (head_dim_ - 2)));
  }
  return mx::fast::rope(x, head_dim_, false, base, position_scale, offset);
}

mx::array Attention::operator()(const mx::array& x, const std::optional<mx::array>& mask,
                                generate::LayerCache* cache) {
  int batch = x.shape(0), length = x.shape(1);
  int offset = cache ? cache->offset() : 0;
  int keys = offset + length;
  auto heads = [&](const mx::array& y, int n) {  // (B, L, n*D) -> (B, n, L, D)
    return mx::transpose(mx::reshape(y, {batch, length, n, head_dim_}), {0, 2, 1, 3});
  };
  mx::array q = mx::reshape((*q_proj_)(x), {batch, length, n_heads_, head_dim_});
  mx::array k = mx::reshape((*k_proj_)(x), {batch, length, n_kv_heads_, head_dim_});
  if (q_norm_) {
    q = (*q_norm_)(q);
    k = (*k_norm_)(k);
  }
  q = rotate(mx::transpose(q, {0, 2, 1, 3}), offset);
  k = rotate(mx::transpose(k, {0, 2, 1, 3}), offset);
  mx::array v = heads((*v_proj_)(x), n_kv_heads_);
  if (cache) std::tie(k, v) = cache->update(k, v);
  float scale = 1.0f / std::sqrt(static_cast<float>(head_dim_));

  // The mask: the caller's, else causal; a window that some query exceeds restricts
  // either. A single new token without a window sees every key, so needs none.
  bool windowed = window_ > 0 && keys > window_;
  std::string mode;
  std::optional<mx::array> array_mask;
  if (mask) {
    FT_CHECK(mask->ndim() >= 2 && mask->shape(-1) == keys && mask->shape(-2) == length, "llama",
             "attention mask must end in (", length, ", ", keys, "), got ",
             mask->ndim() >= 2
                 ? std::to_string(mask->shape(-2)) + ", " + std::to_string(mask->shape(-1))
                 : std::to_string(mask->ndim()) + "-D");
    array_mask = *mask;
    if (windowed) {
      mx::array allowed = causal_mask(length, offset, window_);
      array_mask =
          mask->dtype() == mx::bool_
              ? mx::logical_and(*mask, allowed)
              : mx::where(allowed, *mask,
                          mx::array(-std::numeric_limits<float>::infinity(), mask->dtype()));
    }
    mode = "array";
  } else if (windowed || (length > 1 && offset > 0)) {
    array_mask = causal_mask(length, offset, windowed ? window_ : 0);
    mode = "array";
  } else if (length > 1) {
    mode = "causal";
  }
  mx::array out = kernels::attention(q, k, v, scale, mode, array_mask);
  out = mx::reshape(mx::transpose(out, {0, 2, 1, 3}), {batch, length, n_heads_ * head_dim_});
  return (*o_proj_)(out);
}

Mlp::Mlp(const LlamaConfig& config, Rng& rng, mx::Dtype dtype) {
  bool bias = config.mlp_bias;
  gate_proj_ = linear(config.hidden_size, config.intermediate_size, bias, rng, dtype);
  up_proj_ = linear(config.hidden_size, config.intermediate_size, bias, rng, dtype);
  down_proj_ = linear(config.intermediate_size, config.hidden_size, bias, rng, dtype);
  register_module("gate_proj", &gate_proj_);
  register_module("up_proj", &up_proj_);
  register_module("down_proj", &down_proj_);
}

mx::array Mlp::operator()(const mx::array& x) {
  return (*down_proj_)(kernels::swiglu((*gate_proj_)(x), (*up_proj_)(x)));
}

DecoderLayer::DecoderLayer(const LlamaConfig& config, Rng& rng, mx::Dtype dtype, int window) {
  input_layernorm_ = std::make_shared<nn::RMSNorm>(config.hidden_size, config.rms_norm_eps, dtype);
  self_attn_ = std::make_shared<Attention>(config, rng, dtype, window);
  post_attention_layernorm_ =
      std::make_shared<nn::RMSNorm>(config.hidden_size, config.rms_norm_eps, dtype);
  mlp_ = std::make_shared<Mlp>(config, rng, dtype);
  register_module("input_layernorm", &input_layernorm_);
  register_module("self_attn", &self_attn_);
  register_module("post_attention_layernorm", &post_attention_layernorm_);
  register_module("mlp", &mlp_);
}

mx::array DecoderLayer::operator()(const mx::array& x, const std::optional<mx::array>& mask,
                                   generate::LayerCache* cache) {
  mx::array h = x + (*self_attn_)((*input_layernorm_)(x), mask, cache);
  return h + (*mlp_)((*post_attention_layernorm_)(h));
}

LlamaBackbone::LlamaBackbone(const LlamaConfig& config, Rng& rng, mx::Dtype dtype) {
  // Small embeddings keep the first logits near uniform when the head is tied.
  embed_tokens_ = std::make_shared<nn::Embedding>(nn::init::normal(
      {config.vocab_size, config.hidden_size}, config.initializer_range, rng.next(), dtype));
  layers_ = std::make_shared<nn::ModuleList<DecoderLayer>>();
  for (int i = 0; i < config.num_hidden_layers; ++i)
    layers_->push_back(
        std::make_shared<DecoderLayer>(config, rng, dtype, config.window_of_layer(i)));
  norm_ = std::make_shared<nn::RMSNorm>(config.hidden_size, config.rms_norm_eps, dtype);
  register_module("embed_tokens", &embed_tokens_);
  register_module("layers", &layers_);
  register_module("norm", &norm_);
}

mx::array LlamaBackbone::operator()(const mx::array& ids, const std::optional<mx::array>& mask,
                                    generate::KVCache* cache) {
  FT_CHECK(ids.ndim() == 2, "llama", "input ids must be (batch, length), got ", ids.ndim(), "-D");
  if (cache)
    FT_CHECK(cache->num_layers() == static_cast<int>(layers_->size()), "llama", "the cache has ",
             cache->num_layers(), " layers, the model ", layers_->size());
  mx::array h = (*embed_tokens_)(ids);
  for (size_t i = 0; i < layers_->size(); ++i) {
    DecoderLayer& layer = (*layers_)[i];
    generate::LayerCache* layer_cache = cache ? &cache->layer(static_cast<int>(i)) : nullptr;
    if (gradient_checkpointing && training() && !cache) {
      // The mask is a constant of the data (no gradient), so the closure holds it.
      auto run = [&layer, mask](const std::vector<mx::array>& in) {
        return std::vector<mx::array>{layer(in[0], mask)};
      };
      h = nn::checkpoint(layer, run)({h})[0];
    } else {
      h = layer(h, mask, layer_cache);
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

mx::array LlamaForCausalLM::output_weight() const {
  const nn::Module* head = lm_head_ ? static_cast<const nn::Module*>(lm_head_.get())
                                    : static_cast<const nn::Module*>(model_->embed_tokens_.get());
  if (auto* linear = dynamic_cast<const nn::Linear*>(head)) return linear->weight();
  if (auto* quantized = dynamic_cast<const nn::QuantizedLinear*>(head))
    return quantized->dequantized_weight();
  if (auto* embedding = dynamic_cast<const nn::Embedding*>(head)) return embedding->weight();
  if (auto* quantized = dynamic_cast<const nn::QuantizedEmbedding*>(head))
    return quantized->dequantized_weight();
  throw Error("llama", "the output head is a " + head->type_name() +
                           ", which has no single weight matrix (adapters on lm_head are not "
                           "supported)");
}

mx::array LlamaForCausalLM::output_logits(const mx::array& hidden) const {
  if (lm_head_) return (*lm_head_)(hidden);
  const nn::Module* embed = model_->embed_tokens_.get();
  if (auto* quantized = dynamic_cast<const nn::QuantizedEmbedding*>(embed))
    return quantized->as_linear(hidden);
  return mx::matmul(hidden, mx::transpose(output_weight()));
}

mx::array LlamaForCausalLM::operator()(const mx::array& ids, const std::optional<mx::array>& mask) {
  return output_logits(hidden_states(ids, mask));
}

mx::array LlamaForCausalLM::forward(const mx::array& ids, generate::KVCache& cache,
                                    const std::optional<mx::array>& mask) {
  return output_logits((*model_)(ids, mask, &cache));
}

}  // namespace ft::models
