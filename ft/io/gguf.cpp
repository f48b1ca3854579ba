#include "ft/io/gguf.h"

#include <charconv>
#include <cstdlib>
#include <map>
#include <string>
#include <variant>

#include <mlx/io.h>
#include <mlx/ops.h>

#include "ft/core/error.h"

namespace ft::io {

namespace mx = mlx::core;
namespace fs = std::filesystem;

namespace {

using Metadata = std::unordered_map<std::string, mx::GGUFMetaData>;

// A number of the metadata (GGUF keeps them as typed scalars, which MLX reads as arrays).
double number(const Metadata& meta, const std::string& key, const fs::path& file) {
  auto it = meta.find(key);
  FT_CHECK(it != meta.end(), "gguf", file.string(), ": metadata '", key, "' is missing");
  const auto* value = std::get_if<mx::array>(&it->second);
  FT_CHECK(value && value->size() == 1, "gguf", file.string(), ": metadata '", key,
           "' is not a number");
  if (value->dtype() == mx::float32) {
    // The shortest decimal that reads back as the same float (1e-05, not
    // 9.999999747378752e-06), as config.json would hold it.
    char buffer[32];
    const float f = value->item<float>();
    auto [end, error] = std::to_chars(buffer, buffer + sizeof(buffer), f);
    FT_ASSERT(error == std::errc());
    return std::strtod(std::string(buffer, end).c_str(), nullptr);
  }
  return mx::astype(*value, mx::float64, mx::Device::cpu).item<double>();
}

std::string text(const Metadata& meta, const std::string& key, const fs::path& file) {
  auto it = meta.find(key);
  FT_CHECK(it != meta.end(), "gguf", file.string(), ": metadata '", key, "' is missing");
  const auto* value = std::get_if<std::string>(&it->second);
  FT_CHECK(value, "gguf", file.string(), ": metadata '", key, "' is not a string");
  return *value;
}

// llama.cpp's names of a decoder layer's tensors -> transformers'.
const std::map<std::string, std::string>& layer_names() {
  static const std::map<std::string, std::string> names = {
      {"attn_q", "self_attn.q_proj"},       {"attn_k", "self_attn.k_proj"},
      {"attn_v", "self_attn.v_proj"},       {"attn_output", "self_attn.o_proj"},
      {"ffn_gate", "mlp.gate_proj"},        {"ffn_up", "mlp.up_proj"},
      {"ffn_down", "mlp.down_proj"},        {"attn_norm", "input_layernorm"},
      {"ffn_norm", "post_attention_layernorm"}};
  return names;
}

// "blk.3.attn_q.weight" -> "model.layers.3.self_attn.q_proj.weight"; empty when unknown.
std::string hf_name(const std::string& name) {
  if (name == "token_embd.weight") return "model.embed_tokens.weight";
  if (name == "output_norm.weight") return "model.norm.weight";
  if (name == "output.weight") return "lm_head.weight";
  if (!name.starts_with("blk.")) return "";
  const size_t layer_end = name.find('.', 4);
  const size_t module_end = name.rfind('.');
  if (layer_end == std::string::npos || module_end <= layer_end) return "";
  auto it = layer_names().find(name.substr(layer_end + 1, module_end - layer_end - 1));
  if (it == layer_names().end()) return "";
  return "model.layers." + name.substr(4, layer_end - 4) + "." + it->second +
         name.substr(module_end);
}

// The inverse of llama.cpp's permute: rows (heads, head_dim / 2, 2) -> (heads, 2,
// head_dim / 2), each head's rotary halves back in two blocks.
mx::array unpermute(const mx::array& w, int heads) {
  const int rows = w.shape(0);
  mx::Shape split{heads, rows / heads / 2, 2};
  for (int i = 1; i < static_cast<int>(w.ndim()); ++i) split.push_back(w.shape(i));
  return mx::reshape(mx::swapaxes(mx::reshape(w, split), 1, 2), w.shape());
}

}  // namespace

bool is_gguf_file(const fs::path& path) {
  std::error_code ec;
  return path.extension() == ".gguf" && fs::is_regular_file(path, ec);
}

GgufModel read_gguf_model(const fs::path& file) {
  std::error_code ec;
  FT_CHECK(fs::is_regular_file(file, ec), "gguf", file.string(), ": no such file");
  mx::GGUFLoad loaded;
  try {
    loaded = mx::load_gguf(file.string(), mx::Device::cpu);
  } catch (const std::exception& e) {
    throw Error("gguf", file.string() + ": " + e.what());
  }
  auto& [arrays, meta] = loaded;
  const std::string arch = text(meta, "general.architecture", file);
  FT_CHECK(arch == "llama", "gguf", file.string(), ": architecture '", arch,
           "' is not supported yet (llama)");
  auto size = [&](const std::string& key) {
    return static_cast<int64_t>(number(meta, arch + "." + key, file));
  };
  GgufModel out;
  nlohmann::json& c = out.config;
  c["model_type"] = "llama";
  c["architectures"] = {"LlamaForCausalLM"};
  c["hidden_size"] = size("embedding_length");
  c["intermediate_size"] = size("feed_forward_length");
  c["num_hidden_layers"] = size("block_count");
  c["num_attention_heads"] = size("attention.head_count");
  c["num_key_value_heads"] = meta.contains(arch + ".attention.head_count_kv")
                                 ? size("attention.head_count_kv")
                                 : size("attention.head_count");
  c["max_position_embeddings"] = size("context_length");
  c["rms_norm_eps"] = number(meta, arch + ".attention.layer_norm_rms_epsilon", file);
  c["rope_theta"] = meta.contains(arch + ".rope.freq_base")
                        ? number(meta, arch + ".rope.freq_base", file)
                        : 10000.0;
  if (meta.contains(arch + ".rope.dimension_count"))
    c["head_dim"] = size("rope.dimension_count");
  auto embedding = arrays.find("token_embd.weight");
  FT_CHECK(embedding != arrays.end(), "gguf", file.string(), ": no token_embd.weight tensor");
  c["vocab_size"] = meta.contains(arch + ".vocab_size") ? size("vocab_size")
                                                        : int64_t(embedding->second.shape(0));
  c["tie_word_embeddings"] = !arrays.contains("output.weight");

  const int heads = c["num_attention_heads"], kv_heads = c["num_key_value_heads"];
  for (auto& [name, value] : arrays) {
    const std::string hf = hf_name(name);
    FT_CHECK(!hf.empty(), "gguf", file.string(), ": tensor '", name,
             "' is not one of a llama model's");
    FT_CHECK(mx::issubdtype(value.dtype(), mx::floating), "gguf", file.string(), ": tensor '",
             name, "' is quantized, which is not supported yet");
    mx::array w = value;
    if (hf.ends_with("self_attn.q_proj.weight")) w = unpermute(w, heads);
    if (hf.ends_with("self_attn.k_proj.weight")) w = unpermute(w, kv_heads);
    out.weights.set(hf, w);
  }
  return out;
}

}  // namespace ft::io
