// LFM2 (Liquid): a stack mixing short gated convolutions with attention. Every layer is
// h = x + op(operator_norm(x)); out = h + feed_forward(ffn_norm(h)), where op is
// self_attn (q/k RMSNorms named q_layernorm/k_layernorm, out_proj) on the layers
// layer_types names "full_attention" and a short convolution ("conv") elsewhere:
//   [b | c | v] = in_proj(x);  y = out_proj(c * causal_depthwise_conv(b * v))
// with conv.conv.weight (hidden, 1, conv_L_cache). The MLP is w1/w3/w2 (SwiGLU); the
// final norm is embedding_norm. In generation each convolution layer keeps its last
// conv_L_cache - 1 inputs (ft/models/cache.h).
#include <mlx/ops.h>

#include "ft/core/error.h"
#include "ft/models/families/families.h"
#include "ft/nn/init.h"

namespace ft::models::families {

namespace {

Config read(const io::ModelConfig& config) {
  Config c = read_common_config(config);
  c.norm_eps = static_cast<float>(config.get_number("norm_eps", 1e-5));
  c.tie_word_embeddings =
      config.get_bool("tie_embedding", config.get_bool("tie_word_embeddings", true));
  if (config.has("block_ff_dim")) c.intermediate_size = read_size(config, "block_ff_dim");
  if (config.get_bool("block_auto_adjust_ff_dim", true)) {
    // transformers' Lfm2MLP: two thirds, then the multiplier and a round up.
    int size = static_cast<int>(2 * static_cast<int64_t>(c.intermediate_size) / 3);
    if (config.has("block_ffn_dim_multiplier")) {
      double multiplier = config.get_number("block_ffn_dim_multiplier");
      FT_CHECK(multiplier > 0 && multiplier <= 64, config.file().string(),
               "block_ffn_dim_multiplier must be in (0, 64], got ", multiplier);
      int multiple = read_size(config, "block_multiple_of", 256);
      size = static_cast<int>(multiplier * size);
      size = multiple * ((size + multiple - 1) / multiple);
    }
    c.intermediate_size = size;
  }
  c.conv_kernel = read_size(config, "conv_L_cache", 3);
  c.conv_bias = config.get_bool("conv_bias", false);
  c.layer_types = read_layer_types(config);
  if (c.layer_types.empty()) {
    std::vector<bool> full(c.num_hidden_layers, !config.has("full_attn_idxs"));
    if (config.has("full_attn_idxs")) {
      FT_CHECK(config.json()["full_attn_idxs"].is_array(), config.file().string(),
               "full_attn_idxs must be a list");
      for (const auto& i : config.json()["full_attn_idxs"]) {
        FT_CHECK(i.is_number_integer() && i.get<int64_t>() >= 0 &&
                     i.get<int64_t>() < c.num_hidden_layers,
                 config.file().string(), "full_attn_idxs holds ", i.dump(),
                 ", not a layer index below ", c.num_hidden_layers);
        full[i.get<int>()] = true;
      }
    }
    for (bool f : full) c.layer_types.push_back(f ? "full_attention" : "conv");
  }
  for (const std::string& type : c.layer_types)
    FT_CHECK(type == "full_attention" || type == "conv", config.file().string(),
             "unknown LFM2 layer type '", type, "' (known: full_attention, conv)");
  return c;
}

// The depthwise causal convolution's parameters, conv.weight (hidden, 1, kernel).
class DepthwiseConv : public nn::Module {
 public:
  DepthwiseConv(int channels, int kernel, bool bias, Rng& rng, mx::Dtype dtype)
      : weight(nn::init::uniform_fan_in({channels, 1, kernel}, kernel, rng.next(), dtype)) {
    register_parameter("weight", &weight);
    if (bias) {
      this->bias = nn::init::uniform_fan_in({channels}, kernel, rng.next(), dtype);
      register_parameter("bias", &*this->bias);
    }
  }
  std::string type_name() const override { return "DepthwiseConv"; }
  mx::array weight;  // (channels, 1, kernel)
  std::optional<mx::array> bias;
};

class ShortConv : public nn::Module {
 public:
  ShortConv(const Config& c, Rng& rng, mx::Dtype dtype) : kernel_(c.conv_kernel) {
    int h = c.hidden_size;
    conv_ = std::make_shared<DepthwiseConv>(h, kernel_, c.conv_bias, rng, dtype);
    in_proj_ = make_linear(h, 3 * h, c.conv_bias, rng, dtype);
    out_proj_ = make_linear(h, h, c.conv_bias, rng, dtype);
    register_module("conv", &conv_);
    register_module("in_proj", &in_proj_);
    register_module("out_proj", &out_proj_);
  }
  std::string type_name() const override { return "ShortConv"; }

  // x (batch, length, hidden) -> same.
  mx::array operator()(const mx::array& x, LayerCache* cache) {
    int batch = x.shape(0), length = x.shape(1), hidden = x.shape(2);
    auto parts = mx::split((*in_proj_)(x), 3, -1);  // b, c, v: (B, L, H) each
    mx::array bv = parts[0] * parts[2];
    // The kernel - 1 inputs before this chunk: zeros at the start, else the cache's.
    mx::array before = cache && cache->conv_state()
                           ? *cache->conv_state()
                           : mx::zeros({batch, kernel_ - 1, hidden}, bv.dtype());
    mx::array padded = mx::concatenate({before, bv}, 1);  // (B, K - 1 + L, H)
    if (cache)
      cache->set_conv_state(
          mx::slice(padded, {0, length, 0}, {batch, length + kernel_ - 1, hidden}));
    // out[t] = sum_j w[j] in[t - (K - 1) + j]: K shifted slices of the padded input.
    mx::array w =
        mx::reshape(mx::transpose(conv_->weight, {2, 1, 0}), {kernel_, hidden});  // (K, H)
    mx::array out = mx::zeros_like(bv);
    for (int j = 0; j < kernel_; ++j) {
      mx::array shifted = mx::slice(padded, {0, j, 0}, {batch, j + length, hidden});
      out = out + shifted * mx::slice(w, {j, 0}, {j + 1, hidden});
    }
    if (conv_->bias) out = out + *conv_->bias;
    return (*out_proj_)(parts[1] * out);
  }

 private:
  int kernel_;
  std::shared_ptr<DepthwiseConv> conv_;
  std::shared_ptr<nn::Layer> in_proj_, out_proj_;
};

class Lfm2Layer : public Block {
 public:
  Lfm2Layer(const Config& c, int layer, Rng& rng, mx::Dtype dtype) {
    if (c.layer_is(layer, "conv")) {
      conv_ = std::make_shared<ShortConv>(c, rng, dtype);
      register_module("conv", &conv_);
    } else {
      AttentionSpec attention;
      attention.output_name = "out_proj";
      attention.qk_norm = NormKind::rms;
      attention.q_norm_name = "q_layernorm";
      attention.k_norm_name = "k_layernorm";
      self_attn_ = std::make_shared<Attention>(c, attention, rng, dtype);
      register_module("self_attn", &self_attn_);
    }
    MlpSpec mlp;
    mlp.gate_name = "w1";
    mlp.up_name = "w3";
    mlp.down_name = "w2";
    feed_forward_ = std::make_shared<Mlp>(c, mlp, rng, dtype);
    operator_norm_ = make_norm(c.norm, c.hidden_size, c.norm_eps, dtype);
    ffn_norm_ = make_norm(c.norm, c.hidden_size, c.norm_eps, dtype);
    register_module("feed_forward", &feed_forward_);
    register_module("operator_norm", &operator_norm_);
    register_module("ffn_norm", &ffn_norm_);
  }
  std::string type_name() const override { return "Lfm2Layer"; }

  mx::array operator()(const mx::array& x, const LayerInput& in) override {
    mx::array normed = (*operator_norm_)(x);
    mx::array h = x + (conv_ ? (*conv_)(normed, in.cache) : (*self_attn_)(normed, in));
    return h + (*feed_forward_)((*ffn_norm_)(h));
  }

 private:
  std::shared_ptr<ShortConv> conv_;
  std::shared_ptr<Attention> self_attn_;
  std::shared_ptr<Mlp> feed_forward_;
  std::shared_ptr<nn::Layer> operator_norm_, ffn_norm_;
};

std::unique_ptr<CausalLM> build(const Config& c, Rng& rng, mx::Dtype dtype) {
  StackSpec stack;
  stack.norm_name = "embedding_norm";
  auto layer = [&](int i) -> std::shared_ptr<Block> {
    return std::make_shared<Lfm2Layer>(c, i, rng, dtype);
  };
  return std::make_unique<CausalLM>(c, stack, layer, rng, dtype);
}

nlohmann::json init_config(const std::string&, const InitSizes& sizes) {
  nlohmann::json j = common_init_config("Lfm2ForCausalLM", "lfm2", sizes);
  j.erase("rms_norm_eps");
  j["norm_eps"] = 1e-5;
  j["conv_L_cache"] = 3;
  j["conv_bias"] = false;
  j["block_auto_adjust_ff_dim"] = false;
  std::vector<std::string> types;
  for (int i = 0; i < sizes.num_hidden_layers; ++i)
    types.push_back(i % 2 ? "full_attention" : "conv");
  j["layer_types"] = types;
  return j;
}

}  // namespace

Family lfm2() {
  return {.model_types = {"lfm2"},
          .read_config = read,
          .build = build,
          .init_config = init_config,
          .sanitize = drop_buffers,
          .default_lora_targets = {"q_proj", "k_proj", "v_proj", "out_proj", "in_proj"}};
}

}  // namespace ft::models::families
