#include "ft/models/registry.h"

#include <algorithm>
#include <map>

#include <mlx/ops.h>

#include "ft/core/error.h"
#include "ft/core/log.h"
#include "ft/io/gguf.h"
#include "ft/models/families/families.h"
#include "ft/models/quantize.h"

namespace ft::models {

namespace {

// model_type -> family, built once from FT_MODEL_FAMILIES.
const std::map<std::string, Family>& registry() {
  static const std::map<std::string, Family> table = [] {
    std::map<std::string, Family> out;
    std::vector<Family> all;
#define FT_COLLECT_FAMILY(name) all.push_back(families::name());
    FT_MODEL_FAMILIES(FT_COLLECT_FAMILY)
#undef FT_COLLECT_FAMILY
    for (const Family& family : all)
      for (const std::string& type : family.model_types) out.emplace(type, family);
    return out;
  }();
  return table;
}

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& item : items) out += (out.empty() ? "" : ", ") + item;
  return out;
}

}  // namespace

std::vector<std::string> known_model_types() {
  std::vector<std::string> out;
  for (const auto& [name, family] : registry()) out.push_back(name);
  return out;
}

const Family& family_of(const std::string& model_type, const std::string& where) {
  auto it = registry().find(model_type);
  FT_CHECK(it != registry().end(), where, "unknown model_type '", model_type,
           "' (known: ", join(known_model_types()), ")");
  return it->second;
}

Config from_hf_config(const io::ModelConfig& config) {
  const std::string where = config.file().string();
  FT_CHECK(config.has("model_type"), where,
           "missing field model_type (known: ", join(known_model_types()), ")");
  std::string type = config.get_string("model_type");
  Config c = family_of(type, where).read_config(config);
  c.model_type = type;
  try {
    c.validate();
  } catch (const Error& e) {
    throw Error(where, e.what());
  }
  return c;
}

std::unique_ptr<CausalLM> build_model(const Config& config, Rng& rng, mx::Dtype dtype) {
  return family_of(config.model_type).build(config, rng, dtype);
}

namespace {

// A GGUF file: its metadata as config.json, its tensors under transformers' names.
std::unique_ptr<CausalLM> load_gguf_model(const std::filesystem::path& file, mx::Dtype dtype) {
  io::GgufModel gguf = io::read_gguf_model(file);
  const io::ModelConfig hf_config(gguf.config, file);
  Config config = from_hf_config(hf_config);
  Rng rng(0);
  std::unique_ptr<CausalLM> model = family_of(config.model_type).build(config, rng, dtype);
  ParamMap weights;
  for (const auto& [name, value] : gguf.weights)
    weights.set(name,
                mx::issubdtype(value.dtype(), mx::floating) ? mx::astype(value, dtype) : value);
  if (!gguf.dequantized_types.empty()) {
    std::string types;
    for (const auto& t : gguf.dequantized_types) types += (types.empty() ? "" : ", ") + t;
    log::info(file.string(), ": ", types,
              " tensors have no exact MLX quantized form and were dequantized to floats");
  }
  try {
    make_quantized_layers(*model, weights, io::quantization_config(hf_config));
    model->load(weights, /*strict=*/true);
  } catch (const Error& e) {
    throw Error(file.string(), e.what());
  }
  return model;
}

}  // namespace

std::unique_ptr<CausalLM> load_model(const std::filesystem::path& folder, mx::Dtype dtype) {
  if (io::is_gguf_file(folder)) return load_gguf_model(folder, dtype);
  const io::ModelConfig hf_config = io::read_config(folder);
  Config config = from_hf_config(hf_config);
  const Family& family = family_of(config.model_type);
  std::optional<io::QuantizationConfig> quantization = io::quantization_config(hf_config);
  ParamMap weights = io::load_weights(folder, dtype);
  // The random initialisation is lazy and replaced before it is ever evaluated.
  Rng rng(0);
  std::unique_ptr<CausalLM> model = family.build(config, rng, dtype);
  try {
    if (family.sanitize) family.sanitize(weights, config);
    make_quantized_layers(*model, weights, quantization);
    model->load(weights, /*strict=*/true);
  } catch (const Error& e) {
    throw Error(folder.string(), e.what());
  }
  return model;
}

std::optional<TextPart> text_part(const io::ModelConfig& config) {
  const Family& family = family_of(config.get_string("model_type", ""), config.file().string());
  return family.text_part ? family.text_part(config) : std::nullopt;
}

nlohmann::json loaded_config(const io::ModelConfig& config) {
  std::optional<TextPart> text = text_part(config);
  if (!text) return config.json();
  nlohmann::json out = text->config;
  for (const char* key : {"quantization", "quantization_config"})
    if (config.json().contains(key)) out[key] = config.json()[key];
  return out;
}

io::ModulePrefix peft_module_prefix(const io::ModelConfig& config) {
  std::optional<TextPart> text = text_part(config);
  if (!text) return {};
  return {.ours = "model.", .theirs = text->module_prefix};
}

namespace families {

void drop_buffers(ParamMap& weights, const Config& config) {
  for (const std::string& name : weights.names()) {
    bool rotary_buffer = name.ends_with("rotary_emb.inv_freq");
    // A tied head may still be saved, quantized (weight, scales, biases) or not.
    bool tied_head = config.tie_word_embeddings && name.starts_with("lm_head.");
    if (rotary_buffer || tied_head) weights.erase(name);
  }
}

nlohmann::json common_init_config(const std::string& architecture, const std::string& model_type,
                                  const InitSizes& s) {
  nlohmann::json j = {{"architectures", {architecture}},
                      {"model_type", model_type},
                      {"vocab_size", s.vocab_size},
                      {"hidden_size", s.hidden_size},
                      {"intermediate_size", s.intermediate_size},
                      {"num_hidden_layers", s.num_hidden_layers},
                      {"num_attention_heads", s.num_attention_heads},
                      {"num_key_value_heads", s.num_key_value_heads},
                      {"head_dim", s.hidden_size / s.num_attention_heads},
                      {"max_position_embeddings", 2048},
                      {"initializer_range", 0.02},
                      {"rms_norm_eps", 1e-6},
                      {"rope_theta", 10000.0},
                      {"rope_scaling", nullptr},
                      {"tie_word_embeddings", true},
                      {"attention_dropout", 0.0},
                      {"use_cache", true},
                      {"torch_dtype", "float32"},
                      {"transformers_version", "4.56.0"}};
  if (s.bos_token_id >= 0) j["bos_token_id"] = s.bos_token_id;
  if (s.eos_token_id >= 0) j["eos_token_id"] = s.eos_token_id;
  return j;
}

}  // namespace families

}  // namespace ft::models
