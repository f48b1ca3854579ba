// Qwen2 and Qwen2.5 (Llama's layers with a bias on q, k and v) and Qwen3 (an RMSNorm of
// each query and key head before the rotation, self_attn.{q,k}_norm). Both may use a
// sliding window, only when use_sliding_window is set, on the layers layer_types names.
#include "ft/models/families/families.h"

namespace ft::models::families {

namespace {

Config read(const io::ModelConfig& config) {
  Config c = read_common_config(config);
  if (config.get_string("model_type") == "qwen2") {
    c.attention_bias = false;
    c.qkv_bias = true;
  } else {
    c.qk_norm = true;
  }
  if (config.get_bool("use_sliding_window", false)) {
    c.sliding_window = static_cast<int>(read_size(config, "sliding_window", 0));
    c.layer_types = read_layer_types(config);
  }
  return c;
}

nlohmann::json init_config(const std::string& type, const InitSizes& sizes) {
  nlohmann::json j =
      common_init_config(type == "qwen2" ? "Qwen2ForCausalLM" : "Qwen3ForCausalLM", type, sizes);
  j["hidden_act"] = "silu";
  j["use_sliding_window"] = false;
  j["sliding_window"] = nullptr;
  j["max_window_layers"] = sizes.num_hidden_layers;
  if (type == "qwen3") j["attention_bias"] = false;
  return j;
}

}  // namespace

Family qwen() {
  return {.model_types = {"qwen2", "qwen3"},
          .read_config = read,
          .build = build_llama,  // Llama's layers, switched by the config
          .init_config = init_config,
          .sanitize = drop_buffers,
          .default_lora_targets = kAttentionProjections};
}

}  // namespace ft::models::families
