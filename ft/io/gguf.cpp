#include "ft/io/gguf.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <map>
#include <set>
#include <string>

#include <mlx/ops.h>

#include "ft/core/error.h"
#include "ft/io/ggml_quants.h"
#include "ft/io/gguf_file.h"

namespace ft::io {

namespace fs = std::filesystem;

namespace {

// A real number of the metadata: a float32 / float64, or an integer.
double number(const GgufFile& gguf, const std::string& key) {
  const GgufValue& value = gguf.at(key);
  try {
    if (const auto* f = std::get_if<float>(&value.value)) {
      // The shortest decimal that reads back as the same float (1e-05, not
      // 9.999999747378752e-06), as config.json would hold it.
      char buffer[32];
      auto [end, error] = std::to_chars(buffer, buffer + sizeof(buffer), *f);
      FT_ASSERT(error == std::errc());
      return std::strtod(std::string(buffer, end).c_str(), nullptr);
    }
    if (value.type() == GgufValueType::Float64) return value.as_float();
    return static_cast<double>(value.as_int());
  } catch (const Error& e) {
    throw Error("gguf", gguf.path.string() + ": metadata '" + key + "': " + e.fact());
  }
}

// An integer of the metadata (sizes and counts).
int64_t integer(const GgufFile& gguf, const std::string& key) {
  try {
    return gguf.at(key).as_int();
  } catch (const Error& e) {
    if (gguf.find(key) == nullptr) throw;
    throw Error("gguf", gguf.path.string() + ": metadata '" + key + "': " + e.fact());
  }
}

std::string text(const GgufFile& gguf, const std::string& key) {
  const GgufValue& value = gguf.at(key);
  FT_CHECK(value.type() == GgufValueType::String, "gguf", gguf.path.string(), ": metadata '", key,
           "' is a ", gguf_value_type_name(value.type()), ", not a string");
  return value.as_string();
}

// "blk.3.attn_q.weight" -> "model.layers.3.self_attn.q_proj.weight"; empty when
// unknown.
std::string hf_name(const GgufArch& arch, const std::string& name) {
  if (name == "token_embd.weight") return "model.embed_tokens.weight";
  if (name == "output_norm.weight") return "model.norm.weight";
  if (name == "output.weight") return "lm_head.weight";
  if (!name.starts_with("blk.")) return "";
  const size_t layer_end = name.find('.', 4);
  const size_t module_end = name.rfind('.');
  if (layer_end == std::string::npos || module_end <= layer_end) return "";
  const std::string module = name.substr(layer_end + 1, module_end - layer_end - 1);
  for (const auto& [gguf, ours] : arch.modules)
    if (gguf == module)
      return "model.layers." + name.substr(4, layer_end - 4) + "." + ours + name.substr(module_end);
  return "";
}

// The inverse of llama.cpp's permute: rows (heads, head_dim / 2, 2) -> (heads,
// 2, head_dim / 2), each head's rotary halves back in two blocks.
mx::array unpermute(const mx::array& w, int heads) {
  const int rows = w.shape(0);
  mx::Shape split{heads, rows / heads / 2, 2};
  for (int i = 1; i < static_cast<int>(w.ndim()); ++i) split.push_back(w.shape(i));
  return mx::reshape(mx::swapaxes(mx::reshape(w, split), 1, 2), w.shape());
}

}  // namespace

// Note [GGUF architectures]
// Each architecture's module names are those of llama.cpp's tensor map (the gguf
// package's MODEL_TENSORS and TensorNameMap, which tests/golden/make_gguf_family_fixtures.py
// writes with); transformers' GGUF loader reads the files the same way. Beyond the names:
//   - llama: the converter permutes attn_q and attn_k rows (interleaved rotary halves);
//     Mistral's checkpoints convert to this architecture too; Llama 3's rotary scaling is
//     a rope_freqs tensor of per-pair factors (llama3_rope_freqs), not metadata;
//   - qwen2: q, k and v carry biases (blk.N.attn_q.bias ...);
//   - qwen3: per-head norms of q and k (attn_q_norm, attn_k_norm), the head size in
//     attention.key_length;
//   - phi3: q, k and v in one matrix (attn_qkv) and gate and up in one (ffn_up, gate rows
//     first, as transformers' gate_up_proj), rotary embedding over rope.dimension_count of
//     each head; longrope's per-pair factors as the tensors rope_factors_long and
//     rope_factors_short, with rope.scaling.original_context_length and
//     rope.scaling.attn_factor (the cosines' and sines' scale). llama.cpp takes the long
//     factors when its context is longer than the original one, transformers when the
//     sequence is: the same for a context of the sequence's length;
//   - gemma2 and gemma3: four norms a layer (attn_norm, post_attention_norm, ffn_norm before
//     the MLP, post_ffw_norm), each stored as 1 + w (transformers' Gemma norms scale by
//     1 + w); llama.cpp scales scores by the head size (by hidden / heads for the 27B
//     models, 46 and 62 layers), slides every second layer (gemma2) or five of six
//     (gemma3), whose sliding layers rotate with base 10000.
namespace {

const std::vector<GgufArch>& gguf_archs() {
  static const std::vector<std::pair<std::string, std::string>> llama_modules = {
      {"attn_q", "self_attn.q_proj"},          {"attn_k", "self_attn.k_proj"},
      {"attn_v", "self_attn.v_proj"},          {"attn_output", "self_attn.o_proj"},
      {"ffn_gate", "mlp.gate_proj"},           {"ffn_up", "mlp.up_proj"},
      {"ffn_down", "mlp.down_proj"},           {"attn_norm", "input_layernorm"},
      {"ffn_norm", "post_attention_layernorm"}};
  static const std::vector<GgufArch> archs = [] {
    auto qwen3 = llama_modules;
    qwen3.push_back({"attn_q_norm", "self_attn.q_norm"});
    qwen3.push_back({"attn_k_norm", "self_attn.k_norm"});
    // Gemma's ffn_norm comes before the MLP, with a norm after attention and after the MLP.
    auto gemma2 = llama_modules;
    for (auto& [gguf, ours] : gemma2)
      if (gguf == "ffn_norm") ours = "pre_feedforward_layernorm";
    gemma2.push_back({"post_attention_norm", "post_attention_layernorm"});
    gemma2.push_back({"post_ffw_norm", "post_feedforward_layernorm"});
    auto gemma3 = gemma2;
    gemma3.push_back({"attn_q_norm", "self_attn.q_norm"});
    gemma3.push_back({"attn_k_norm", "self_attn.k_norm"});
    const std::vector<std::pair<std::string, std::string>> phi3 = {
        {"attn_qkv", "self_attn.qkv_proj"}, {"attn_output", "self_attn.o_proj"},
        {"ffn_up", "mlp.gate_up_proj"},     {"ffn_down", "mlp.down_proj"},
        {"attn_norm", "input_layernorm"},   {"ffn_norm", "post_attention_layernorm"}};
    return std::vector<GgufArch>{
        {"llama", "llama", "LlamaForCausalLM", llama_modules, true},
        {"qwen2", "qwen2", "Qwen2ForCausalLM", llama_modules, false},
        {"qwen3", "qwen3", "Qwen3ForCausalLM", qwen3, false},
        {"phi3", "phi3", "Phi3ForCausalLM", phi3, false},
        {"gemma2", "gemma2", "Gemma2ForCausalLM", gemma2, false, true},
        {"gemma3", "gemma3_text", "Gemma3ForCausalLM", gemma3, false, true}};
  }();
  return archs;
}

}  // namespace

const GgufArch* find_gguf_arch(const std::string& name) {
  for (const auto& a : gguf_archs())
    if (a.name == name) return &a;
  return nullptr;
}

const GgufArch* gguf_arch_of_model_type(const std::string& model_type) {
  if (model_type == "mistral") return find_gguf_arch("llama");
  if (model_type == "gemma3") return find_gguf_arch("gemma3");
  for (const auto& a : gguf_archs())
    if (a.model_type == model_type) return &a;
  return nullptr;
}

std::string gguf_tensor_name(const GgufArch& arch, const std::string& hf) {
  if (hf == "model.embed_tokens.weight") return "token_embd.weight";
  if (hf == "model.norm.weight") return "output_norm.weight";
  if (hf == "lm_head.weight") return "output.weight";
  const std::string prefix = "model.layers.";
  if (!hf.starts_with(prefix)) return "";
  const size_t layer_end = hf.find('.', prefix.size());
  const size_t module_end = hf.rfind('.');
  if (layer_end == std::string::npos || module_end <= layer_end) return "";
  const std::string module = hf.substr(layer_end + 1, module_end - layer_end - 1);
  for (const auto& [gguf, ours] : arch.modules)
    if (ours == module)
      return "blk." + hf.substr(prefix.size(), layer_end - prefix.size()) + "." + gguf +
             hf.substr(module_end);
  return "";
}

mx::array permute_rotary_rows(const mx::array& w, int heads) {
  const int rows = w.shape(0);
  mx::Shape split{heads, 2, rows / heads / 2};
  for (int i = 1; i < static_cast<int>(w.ndim()); ++i) split.push_back(w.shape(i));
  return mx::reshape(mx::swapaxes(mx::reshape(w, split), 1, 2), w.shape());
}

std::vector<float> llama3_rope_freqs(int head_dim, double theta, double factor, double low,
                                     double high, double original_context) {
  const double pi = 3.14159265358979323846;
  const double low_wavelength = original_context / low, high_wavelength = original_context / high;
  std::vector<float> out;
  for (int i = 0; i < head_dim; i += 2) {
    const double wavelength = 2 * pi * std::pow(theta, double(i) / head_dim);
    if (wavelength < high_wavelength) {
      out.push_back(1.0f);
    } else if (wavelength > low_wavelength) {
      out.push_back(float(factor));
    } else {
      const double smooth = (original_context / wavelength - low) / (high - low);
      out.push_back(float(1.0 / ((1 - smooth) / factor + smooth)));
    }
  }
  return out;
}

bool is_gguf_file(const fs::path& path) {
  std::error_code ec;
  return path.extension() == ".gguf" && fs::is_regular_file(path, ec);
}

namespace {

std::string arch_names() {
  std::string out;
  for (const auto& a : gguf_archs()) out += (out.empty() ? "" : ", ") + a.name;
  return out;
}

const GgufArch& arch_of(const GgufFile& gguf) {
  const std::string name = text(gguf, "general.architecture");
  const GgufArch* arch = find_gguf_arch(name);
  FT_CHECK(arch, "gguf", gguf.path.string(), ": architecture '", name, "' is not supported (",
           arch_names(), ")");
  return *arch;
}

}  // namespace

nlohmann::json gguf_model_config(const GgufFile& gguf) {
  const fs::path& file = gguf.path;
  const GgufArch& arch = arch_of(gguf);
  auto key = [&](const std::string& k) { return arch.name + "." + k; };
  auto size = [&](const std::string& k) { return integer(gguf, key(k)); };
  auto has = [&](const std::string& k) { return gguf.find(key(k)) != nullptr; };
  nlohmann::json c;
  c["model_type"] = arch.model_type;
  c["architectures"] = {arch.hf_class};
  c["hidden_size"] = size("embedding_length");
  c["intermediate_size"] = size("feed_forward_length");
  c["num_hidden_layers"] = size("block_count");
  c["num_attention_heads"] = size("attention.head_count");
  c["num_key_value_heads"] = has("attention.head_count_kv") ? size("attention.head_count_kv")
                                                            : size("attention.head_count");
  c["max_position_embeddings"] = size("context_length");
  c["rms_norm_eps"] = number(gguf, key("attention.layer_norm_rms_epsilon"));
  c["rope_theta"] = has("rope.freq_base") ? number(gguf, key("rope.freq_base")) : 10000.0;
  // The head size: attention.key_length where the converter wrote it (config.json had
  // head_dim), else for a llama the rotary dimension, which is the whole head there.
  const int64_t heads = c["num_attention_heads"];
  FT_CHECK(heads > 0, "gguf", file.string(), ": ", key("attention.head_count"), " is 0");
  int64_t head_dim = int64_t(c["hidden_size"]) / heads;
  if (has("attention.key_length"))
    head_dim = size("attention.key_length");
  else if (arch.name == "llama" && has("rope.dimension_count"))
    head_dim = size("rope.dimension_count");
  c["head_dim"] = head_dim;
  if (const GgufTensorInfo* freqs = gguf.find_tensor("rope_freqs.weight")) {
    // Note [GGUF architectures]: Llama 3's scaling as llama.cpp's per-pair factors; the
    // llama3 parameters that give them, tried over the values Llama 3 models use.
    const std::vector<float> factors = [&] {
      mx::array a = mx::astype(load_gguf_tensor(gguf, *freqs), mx::float32);
      a.eval();
      return std::vector<float>(a.data<float>(), a.data<float>() + a.size());
    }();
    FT_CHECK(int64_t(factors.size()) * 2 == head_dim, "gguf", file.string(), ": rope_freqs holds ",
             factors.size(), " factors for a head of ", head_dim);
    const double factor = *std::max_element(factors.begin(), factors.end());
    bool found = false;
    for (double high : {4.0, 2.0, 8.0}) {
      for (double original = 16; original <= double(1 << 20) && !found; original *= 2) {
        const auto expected =
            llama3_rope_freqs(int(head_dim), c["rope_theta"], factor, 1.0, high, original);
        bool same = true;
        for (size_t i = 0; i < factors.size() && same; ++i)
          same = std::abs(expected[i] - factors[i]) <= 1e-5 * factors[i];
        if (same) {
          c["rope_scaling"] = {{"rope_type", "llama3"},
                               {"factor", factor},
                               {"low_freq_factor", 1.0},
                               {"high_freq_factor", high},
                               {"original_max_position_embeddings", int64_t(original)}};
          found = true;
        }
      }
      if (found) break;
    }
    FT_CHECK(found, "gguf", file.string(),
             ": rope_freqs is not the Llama 3 scaling of any factor, original context and band");
  }
  if (arch.name == "phi3") {
    // Rotary embedding over rope.dimension_count of each head; longrope (Note [GGUF
    // architectures]).
    c["original_max_position_embeddings"] = c["max_position_embeddings"];
    const GgufTensorInfo* long_factors = gguf.find_tensor("rope_factors_long.weight");
    const GgufTensorInfo* short_factors = gguf.find_tensor("rope_factors_short.weight");
    FT_CHECK(bool(long_factors) == bool(short_factors), "gguf", file.string(),
             ": longrope needs both rope_factors_long and rope_factors_short");
    if (long_factors) {
      auto floats = [&](const GgufTensorInfo& t) {
        mx::array a = mx::astype(load_gguf_tensor(gguf, t), mx::float32);
        a.eval();
        return std::vector<float>(a.data<float>(), a.data<float>() + a.size());
      };
      FT_CHECK(has("rope.scaling.original_context_length"), "gguf", file.string(),
               ": longrope needs ", key("rope.scaling.original_context_length"));
      const int64_t original = size("rope.scaling.original_context_length");
      nlohmann::json rope = {{"rope_type", "longrope"},
                             {"long_factor", floats(*long_factors)},
                             {"short_factor", floats(*short_factors)},
                             {"original_max_position_embeddings", original}};
      if (has("rope.scaling.attn_factor"))
        rope["attention_factor"] = number(gguf, key("rope.scaling.attn_factor"));
      c["rope_scaling"] = rope;
      c["original_max_position_embeddings"] = original;
    }
    const int64_t rotary = has("rope.dimension_count") ? size("rope.dimension_count") : head_dim;
    c["partial_rotary_factor"] = double(rotary) / double(head_dim);
    if (has("attention.sliding_window")) c["sliding_window"] = size("attention.sliding_window");
  }
  if (arch.norms_plus_one) {
    // Note [GGUF architectures]: llama.cpp's attention scale and sliding layers.
    const int64_t layers = c["num_hidden_layers"];
    const bool large = layers == (arch.name == "gemma2" ? 46 : 62);
    c["query_pre_attn_scalar"] = large ? int64_t(c["hidden_size"]) / heads : head_dim;
    c["sliding_window"] = size("attention.sliding_window");
    for (const char* cap : {"attn_logit_softcapping", "final_logit_softcapping"})
      if (has(cap)) c[cap] = number(gguf, key(cap));
    if (arch.name == "gemma3") {
      c["sliding_window_pattern"] = 6;
      nlohmann::json full = {{"rope_type", "default"}, {"rope_theta", c["rope_theta"]}};
      if (has("rope.scaling.type")) {
        const std::string type = text(gguf, key("rope.scaling.type"));
        FT_CHECK(type == "linear" || type == "none", "gguf", file.string(), ": ",
                 key("rope.scaling.type"), " '", type, "' is not supported (linear)");
        if (type == "linear") {
          full["rope_type"] = "linear";
          full["factor"] = number(gguf, key("rope.scaling.factor"));
        }
      }
      c["rope_parameters"] = {
          {"full_attention", full},
          {"sliding_attention", {{"rope_type", "default"}, {"rope_theta", 10000.0}}}};
    }
  }
  const GgufTensorInfo* embedding = gguf.find_tensor("token_embd.weight");
  FT_CHECK(embedding, "gguf", file.string(), ": no token_embd.weight tensor");
  c["vocab_size"] = has("vocab_size") ? size("vocab_size") : int64_t(embedding->shape[0]);
  c["tie_word_embeddings"] = gguf.find_tensor("output.weight") == nullptr;

  // Note [GGUF blocks as MLX affine groups]: the matrices that stay quantized, each module
  // with its own spec (a file mixes 4 and 8 bits); the default is the first one's.
  nlohmann::json quantization = nlohmann::json::object();
  for (const auto& tensor : gguf.tensors) {
    const std::string hf = hf_name(arch, tensor.name);
    if (hf.empty() || !ggml::maps_to_affine(tensor.type) || tensor.shape.size() != 2) continue;
    quantization[hf.substr(0, hf.size() - std::string(".weight").size())] = {
        {"group_size", 32}, {"bits", tensor.type == ggml::Type::Q8_0 ? 8 : 4}};
  }
  if (!quantization.empty()) {
    nlohmann::json q = quantization.begin().value();
    q.update(quantization);
    c["quantization"] = q;
  }
  return c;
}

GgufModel read_gguf_model(const fs::path& file) {
  const GgufFile gguf = read_gguf_file(file);
  const GgufArch& arch = arch_of(gguf);
  GgufModel out;
  out.config = gguf_model_config(gguf);
  const nlohmann::json& c = out.config;
  std::set<std::string> dequantized;  // quantized types read as floats
  const int heads = c["num_attention_heads"], kv_heads = c["num_key_value_heads"];
  for (const auto& tensor : gguf.tensors) {
    if (tensor.name == "rope_freqs.weight" || tensor.name.starts_with("rope_factors_"))
      continue;  // read into the config
    const std::string hf = hf_name(arch, tensor.name);
    FT_CHECK(!hf.empty(), "gguf", file.string(), ": tensor '", tensor.name, "' is not one of a ",
             arch.name, " model's");
    // Note [GGUF blocks as MLX affine groups]: Q4_0, Q4_1 and Q8_0 matrices stay quantized
    // as weight, scales and biases; other quantized types are dequantized to float32.
    std::vector<mx::array> parts;  // weight[, scales, biases]
    const std::string name = ggml::type_name(static_cast<uint32_t>(tensor.type));
    if (ggml::maps_to_affine(tensor.type) && tensor.shape.size() == 2) {
      std::vector<char> bytes = read_gguf_tensor_bytes(gguf, tensor);
      ggml::Affine a = ggml::to_affine(tensor.type, reinterpret_cast<const uint8_t*>(bytes.data()),
                                       tensor.shape[0], tensor.shape[1], mx::float32);
      parts = {a.weight, a.scales, a.biases};
    } else if (load_gguf_tensor_supported(tensor.type)) {
      parts = {load_gguf_tensor(gguf, tensor)};
    } else {
      FT_CHECK(ggml::can_dequantize(tensor.type), "gguf", file.string(), ": tensor '", tensor.name,
               "' is ", name, ", which ft cannot read");
      std::vector<char> bytes = read_gguf_tensor_bytes(gguf, tensor);
      size_t count = 1;
      for (int d : tensor.shape) count *= size_t(d);
      std::vector<float> values(count);
      ggml::dequantize(tensor.type, reinterpret_cast<const uint8_t*>(bytes.data()), values.size(),
                       values.data());
      parts = {mx::array(values.begin(), tensor.shape, mx::float32)};
      dequantized.insert(name);
    }
    FT_CHECK(parts.size() > 1 || mx::issubdtype(parts[0].dtype(), mx::floating), "gguf",
             file.string(), ": tensor '", tensor.name, "' is ", name, ", not a float type");
    const bool q = hf.ends_with("self_attn.q_proj.weight");
    if (arch.interleaved_rotary && (q || hf.ends_with("self_attn.k_proj.weight"))) {
      const int n = q ? heads : kv_heads;
      const mx::array& w = parts[0];
      FT_CHECK(n > 0 && w.ndim() == 2 && w.shape(0) % (2 * n) == 0, "gguf", file.string(),
               ": tensor '", tensor.name, "' of shape ", w.shape(0), "x",
               w.ndim() > 1 ? w.shape(1) : 1, " cannot hold ", n, " heads of rotary halves");
      for (auto& p : parts) p = unpermute(p, n);  // the same rows of weight, scales, biases
    }
    // Note [GGUF architectures]: Gemma's norms hold 1 + w.
    if (arch.norms_plus_one && hf.ends_with("norm.weight"))
      parts[0] = mx::subtract(parts[0], mx::array(1.0f, parts[0].dtype()));
    const std::string base = hf.substr(0, hf.size() - std::string("weight").size());
    out.weights.set(hf, parts[0]);
    if (parts.size() > 1) {
      out.weights.set(base + "scales", parts[1]);
      out.weights.set(base + "biases", parts[2]);
    }
  }
  out.dequantized_types.assign(dequantized.begin(), dequantized.end());
  return out;
}

}  // namespace ft::io
