#include "ft/models/export_gguf.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <fstream>
#include <iterator>
#include <string>
#include <utility>
#include <vector>

#include <mlx/ops.h>

#include "ft/core/error.h"
#include "ft/io/adapters.h"
#include "ft/io/gguf.h"
#include "ft/io/gguf_file.h"
#include "ft/io/gguf_tokenizer.h"
#include "ft/io/gguf_writer.h"
#include "ft/io/model_folder.h"
#include "ft/models/fuse.h"
#include "ft/models/quantize.h"
#include "ft/models/registry.h"
#include "ft/models/rope.h"

namespace ft::models {
namespace {

namespace fs = std::filesystem;
namespace ggml = io::ggml;
using io::GgufValue;

constexpr const char* kPlace = "export";

constexpr std::pair<GgufFileType, const char*> kFileTypes[] = {
    {GgufFileType::F32, "f32"},      {GgufFileType::F16, "f16"},   {GgufFileType::BF16, "bf16"},
    {GgufFileType::Q8_0, "q8_0"},    {GgufFileType::Q4_0, "q4_0"}, {GgufFileType::Q4_1, "q4_1"},
    {GgufFileType::Q4_K_M, "q4_k_m"}};

// The one type of every matrix of a file type other than Q4_K_M.
ggml::Type uniform_type(GgufFileType type) {
  switch (type) {
    case GgufFileType::F32:
      return ggml::Type::F32;
    case GgufFileType::F16:
      return ggml::Type::F16;
    case GgufFileType::BF16:
      return ggml::Type::BF16;
    case GgufFileType::Q8_0:
      return ggml::Type::Q8_0;
    case GgufFileType::Q4_0:
      return ggml::Type::Q4_0;
    case GgufFileType::Q4_1:
      return ggml::Type::Q4_1;
    case GgufFileType::Q4_K_M:
      break;
  }
  FT_ASSERT(false);
}

// Note [Q4_K_M]
// llama.cpp's Q4_K_M file type is a mixture its quantizer chooses tensor by tensor
// (llama_tensor_get_type); ft chooses the same for the architectures it writes:
//   - Q4_K for the matrices in general;
//   - Q6_K for the output head, or for the token embedding when the head is tied to it;
//   - Q6_K for attn_v and ffn_down in the layers use_more_bits picks: the first and the
//     last eighth of the layers and every third one between (n / 8 + 2, n / 8 + 5, ...);
//   - Q5_K for phi3's fused attn_qkv, and for attn_v of a 70B Llama (80 layers, grouped
//     query heads) where it would be Q4_K;
//   - a matrix whose rows are not whole 256-value super-blocks falls back to the 32-value
//     type llama.cpp takes instead (Q4_K to Q5_0, Q5_K to Q5_1, Q6_K to Q8_0), and one whose
//     rows are not whole 32-value blocks either stays F32 (llama.cpp: F16).
// Its rules for mixtures of experts are not needed: ft writes no such architecture.
// tests/golden/check_gguf_llama_cpp.py checks the choice against llama.cpp's quantizer.
bool use_more_bits(int layer, int layers) {
  return layer < layers / 8 || layer >= 7 * layers / 8 || (layer - layers / 8) % 3 == 2;
}

// The layer of a block tensor ("blk.N. ..."), or -1.
int layer_of(const std::string& gguf_name) {
  if (!gguf_name.starts_with("blk.")) return -1;
  return std::stoi(gguf_name.substr(4, gguf_name.find('.', 4) - 4));
}

ggml::Type q4_k_m_type(const std::string& name, const Config& c, const io::GgufArch& arch,
                       bool has_output) {
  const int layer = layer_of(name);
  const int layers = c.num_hidden_layers;
  if (name == "output.weight" || (!has_output && name == "token_embd.weight"))
    return ggml::Type::Q6_K;
  if (name.ends_with("attn_qkv.weight")) return ggml::Type::Q5_K;
  if (name.ends_with("attn_v.weight")) {
    if (use_more_bits(layer, layers)) return ggml::Type::Q6_K;
    const bool llama_70b =
        arch.name == "llama" && layers == 80 && c.num_attention_heads != c.num_key_value_heads;
    return llama_70b ? ggml::Type::Q5_K : ggml::Type::Q4_K;
  }
  if (name.ends_with("ffn_down.weight") && use_more_bits(layer, layers)) return ggml::Type::Q6_K;
  return ggml::Type::Q4_K;
}

// The type a tensor is written in: F32 for vectors, else the file type's for the tensor,
// fallen back where its rows are not whole blocks (Note [Q4_K_M]).
ggml::Type tensor_type(GgufFileType file, const std::string& name, const mx::array& value,
                       const Config& c, const io::GgufArch& arch, bool has_output) {
  if (value.ndim() != 2 || file == GgufFileType::F32) return ggml::Type::F32;
  ggml::Type type =
      file == GgufFileType::Q4_K_M ? q4_k_m_type(name, c, arch, has_output) : uniform_type(file);
  const int cols = value.shape(1);
  if (cols % 256 != 0) {
    if (type == ggml::Type::Q4_K) type = ggml::Type::Q5_0;
    if (type == ggml::Type::Q5_K) type = ggml::Type::Q5_1;
    if (type == ggml::Type::Q6_K) type = ggml::Type::Q8_0;
  }
  if (ggml::can_quantize(type) && cols % 32 != 0) return ggml::Type::F32;
  return type;
}

// A float matrix or vector as a GGUF tensor of `type`.
void add_tensor(io::GgufWriter& w, const std::string& name, const mx::array& value,
                ggml::Type type) {
  mx::array f32 = mx::astype(value, mx::float32);
  if (type == ggml::Type::F32) return w.add_tensor(name, f32);
  if (type == ggml::Type::F16) return w.add_tensor(name, mx::astype(f32, mx::float16));
  if (type == ggml::Type::BF16) return w.add_tensor(name, mx::astype(f32, mx::bfloat16));
  mx::array c = mx::contiguous(f32);
  c.eval();
  w.add_tensor(name, value.shape(), type, ggml::quantize(type, c.data<float>(), c.size()));
}

// What llama.cpp takes from the architecture rather than from metadata must be what the
// model has (Note [GGUF architectures] in io/gguf.cpp); otherwise the file would mean
// another model there.
void check_llama_cpp_reads(const io::GgufArch& arch, const Config& c, const fs::path& path) {
  auto refuse = [&](const std::string& what) {
    throw Error(kPlace,
                path.string() + ": " + what + ", which a " + arch.name + " GGUF cannot hold");
  };
  const bool gemma = arch.norms_plus_one;
  const bool llama3 = arch.name == "llama" && c.rope_scaling.type == RopeScaling::Type::llama3;
  const bool linear = arch.name == "gemma3" && c.rope_scaling.type == RopeScaling::Type::linear;
  const bool longrope = arch.name == "phi3" && c.rope_scaling.type == RopeScaling::Type::longrope;
  if (c.rope_scaling.type != RopeScaling::Type::none && !llama3 && !linear && !longrope)
    refuse("rope scaling");
  if (c.sliding_window > 0 && arch.name != "phi3" && !gemma) refuse("a sliding window");
  if (!gemma) return;
  const int head_dim = c.resolved_head_dim();
  const bool large = c.num_hidden_layers == (arch.name == "gemma2" ? 46 : 62);
  const float scalar = large ? float(c.hidden_size / c.num_attention_heads) : float(head_dim);
  if (c.query_pre_attn_scalar != scalar)
    refuse("query_pre_attn_scalar " + std::to_string(int(c.query_pre_attn_scalar)) +
           " (llama.cpp takes " + std::to_string(int(scalar)) + ")");
  const int pattern = arch.name == "gemma2" ? 2 : 6;
  for (int i = 0; i < c.num_hidden_layers; ++i)
    if (c.layer_is(i, "sliding_attention") != bool((i + 1) % pattern))
      refuse("sliding layers other than every " + std::to_string(pattern) + "th layer being full");
  if (arch.name == "gemma3" && c.rope_local_theta != 10000.0f)
    refuse("a sliding layers' rope base other than 10000");
}

}  // namespace

GgufFileType parse_gguf_file_type(const std::string& name) {
  std::string lower = name;
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char ch) { return char(std::tolower(ch)); });
  std::string known;
  for (const auto& [type, type_name] : kFileTypes) {
    if (lower == type_name) return type;
    known += (known.empty() ? "" : ", ") + std::string(type_name);
  }
  throw Error(kPlace, "GGUF type '" + name + "' is not one of " + known);
}

std::string gguf_file_type_name(GgufFileType type) {
  for (const auto& [t, type_name] : kFileTypes)
    if (t == type) return type_name;
  FT_ASSERT(false);
}

void export_gguf(const fs::path& model_path, const fs::path& out,
                 const GgufExportOptions& options) {
  const bool from_gguf = io::is_gguf_file(model_path);
  const io::ModelConfig config = io::read_config(model_path);
  const std::string model_type = config.get_string("model_type", "");
  const io::GgufArch* arch = io::gguf_arch_of_model_type(model_type);
  FT_CHECK(arch, kPlace, model_path.string(), ": architecture '", model_type,
           "' is not exported to GGUF yet (llama, mistral, qwen2, qwen3, phi3, gemma2, gemma3)");
  // A GGUF's tokenizer is copied; a folder's is converted (Note [GGUF tokenizers out]),
  // before the model loads, since it may be refused.
  std::vector<std::pair<std::string, GgufValue>> tokenizer;
  if (from_gguf) {
    for (const auto& [key, value] : io::read_gguf_file(model_path).metadata)
      if (key.starts_with("tokenizer.")) tokenizer.emplace_back(key, value);
  } else {
    tokenizer = io::gguf_tokenizer_metadata(model_path, from_hf_config(config).vocab_size);
  }
  // The template an adapter was trained with replaces the model's.
  if (const auto saved =
          options.adapter ? io::adapter_chat_template(*options.adapter) : std::nullopt) {
    std::erase_if(tokenizer, [](const auto& kv) { return kv.first == "tokenizer.chat_template"; });
    std::ifstream in(*saved, std::ios::binary);
    tokenizer.emplace_back("tokenizer.chat_template",
                           GgufValue{std::string(std::istreambuf_iterator<char>(in), {})});
  }

  auto model = load_model(model_path, mx::float32);
  if (options.adapter) {
    io::apply_adapter(*model, *options.adapter, std::nullopt, {});
    fuse_adapter(*model, /*dequantize=*/true);
  }
  dequantize_model(*model);
  const Config& c = model->config();

  check_llama_cpp_reads(*arch, c, model_path);

  io::GgufWriter w;
  const std::string& a = arch->name;
  w.add("general.architecture", GgufValue{a});
  w.add("general.name", GgufValue{out.stem().string()});
  w.add("general.file_type", GgufValue{uint32_t(options.type)});
  if (options.type == GgufFileType::Q4_K_M || ggml::can_quantize(uniform_type(options.type)))
    w.add("general.quantization_version", GgufValue{2u});
  auto u32 = [](int64_t v) { return GgufValue{uint32_t(v)}; };
  const int head_dim = c.resolved_head_dim();
  w.add(a + ".context_length", u32(c.max_position_embeddings));
  w.add(a + ".embedding_length", u32(c.hidden_size));
  w.add(a + ".feed_forward_length", u32(c.intermediate_size));
  w.add(a + ".block_count", u32(c.num_hidden_layers));
  w.add(a + ".attention.head_count", u32(c.num_attention_heads));
  w.add(a + ".attention.head_count_kv", u32(c.num_key_value_heads));
  w.add(a + ".attention.key_length", u32(head_dim));
  w.add(a + ".attention.value_length", u32(head_dim));
  w.add(a + ".rope.dimension_count", u32(int64_t(head_dim * c.partial_rotary_factor)));
  w.add(a + ".rope.freq_base", GgufValue{float(c.rope_theta)});
  w.add(a + ".attention.layer_norm_rms_epsilon", GgufValue{float(c.norm_eps)});
  if (c.sliding_window > 0) w.add(a + ".attention.sliding_window", u32(c.sliding_window));
  if (c.attn_logit_softcapping > 0)
    w.add(a + ".attn_logit_softcapping", GgufValue{c.attn_logit_softcapping});
  if (c.final_logit_softcapping > 0)
    w.add(a + ".final_logit_softcapping", GgufValue{c.final_logit_softcapping});
  if (c.rope_scaling.type == RopeScaling::Type::linear) {
    w.add(a + ".rope.scaling.type", GgufValue{std::string("linear")});
    w.add(a + ".rope.scaling.factor", GgufValue{c.rope_scaling.factor});
  }
  w.add(a + ".vocab_size", u32(c.vocab_size));
  for (auto& [key, value] : tokenizer) w.add(key, std::move(value));

  if (c.rope_scaling.type == RopeScaling::Type::llama3) {
    const RopeScaling& r = c.rope_scaling;
    std::vector<float> freqs =
        io::llama3_rope_freqs(head_dim, c.rope_theta, r.factor, r.low_freq_factor,
                              r.high_freq_factor, r.original_max_position_embeddings);
    w.add_tensor("rope_freqs.weight", mx::array(freqs.data(), {int(freqs.size())}, mx::float32));
  }
  if (c.rope_scaling.type == RopeScaling::Type::longrope) {  // Note [GGUF architectures]
    const RopeScaling& r = c.rope_scaling;
    w.add(a + ".rope.scaling.original_context_length", u32(r.original_max_position_embeddings));
    w.add(a + ".rope.scaling.attn_factor", GgufValue{longrope_attention_factor(c)});
    for (const auto& [name, factors] : {std::pair{"rope_factors_long.weight", &r.long_factor},
                                        {"rope_factors_short.weight", &r.short_factor}})
      w.add_tensor(name, mx::array(factors->data(), {int(factors->size())}, mx::float32));
  }
  const bool has_output = !c.tie_word_embeddings;
  for (const auto& [name, value] : model->parameters()) {
    if (c.tie_word_embeddings && name == "lm_head.weight") continue;
    const std::string gguf = io::gguf_tensor_name(*arch, name);
    FT_CHECK(!gguf.empty(), kPlace, "tensor '", name, "' has no GGUF name in ", arch->name);
    mx::array v = value;
    if (arch->interleaved_rotary && name.ends_with("self_attn.q_proj.weight"))
      v = io::permute_rotary_rows(v, c.num_attention_heads);
    else if (arch->interleaved_rotary && name.ends_with("self_attn.k_proj.weight"))
      v = io::permute_rotary_rows(v, c.num_key_value_heads);
    else if (arch->norms_plus_one && name.ends_with("norm.weight"))
      v = v + mx::array(1.0f, v.dtype());  // Note [GGUF architectures] in io/gguf.cpp
    add_tensor(w, gguf, v, tensor_type(options.type, gguf, v, c, *arch, has_output));
  }
  w.write(out);
}

void export_gguf_lora(const fs::path& model_path, const fs::path& adapter_dir, const fs::path& out,
                      GgufFileType file_type) {
  FT_CHECK(file_type == GgufFileType::F32 || file_type == GgufFileType::F16 ||
               file_type == GgufFileType::BF16 || file_type == GgufFileType::Q8_0,
           kPlace, "a GGUF LoRA adapter is written in f32, f16, bf16 or q8_0, not ",
           gguf_file_type_name(file_type));
  const ggml::Type type = uniform_type(file_type);
  const io::ModelConfig config = io::read_config(model_path);
  const std::string model_type = config.get_string("model_type", "");
  const io::GgufArch* arch = io::gguf_arch_of_model_type(model_type);
  FT_CHECK(arch, kPlace, model_path.string(), ": architecture '", model_type,
           "' is not exported to GGUF yet (llama, mistral, qwen2, qwen3, phi3, gemma2, gemma3)");
  const Config c = from_hf_config(config);
  const io::Adapter adapter = io::load_adapter(adapter_dir, nullptr, peft_module_prefix(config));
  FT_CHECK(!adapter.config.dora, kPlace, adapter_dir.string(),
           ": a DoRA adapter has no GGUF LoRA form (llama.cpp applies B A only); merge it with "
           "--format gguf");
  FT_CHECK(adapter.stacked.empty(), kPlace, adapter_dir.string(),
           ": adapters of stacked expert weights have no GGUF LoRA form; merge them with "
           "--format gguf");
  // llama.cpp scales B A by alpha / rank; rsLoRA's alpha / sqrt(rank) is that of
  // alpha sqrt(rank).
  const float rank = float(adapter.config.rank);
  const float alpha =
      adapter.config.rslora ? adapter.config.alpha * std::sqrt(rank) : adapter.config.alpha;

  io::GgufWriter w;
  w.add("general.architecture", GgufValue{arch->name});
  w.add("general.type", GgufValue{std::string("adapter")});
  w.add("general.name", GgufValue{out.stem().string()});
  w.add("adapter.type", GgufValue{std::string("lora")});
  w.add("adapter.lora.alpha", GgufValue{alpha});
  for (const std::string& module : adapter.modules) {
    const std::string gguf = io::gguf_tensor_name(*arch, module + ".weight");
    FT_CHECK(!gguf.empty(), kPlace, adapter_dir.string(), ": adapted module '", module,
             "' has no GGUF tensor in ", arch->name);
    mx::array a = adapter.weights.at(module + ".lora_A");  // (r, in)
    mx::array b = adapter.weights.at(module + ".lora_B");  // (out, r)
    // The base's q/k rows are in llama.cpp's order there, so B's rows are too.
    if (arch->interleaved_rotary && module.ends_with("self_attn.q_proj"))
      b = io::permute_rotary_rows(b, c.num_attention_heads);
    else if (arch->interleaved_rotary && module.ends_with("self_attn.k_proj"))
      b = io::permute_rotary_rows(b, c.num_key_value_heads);
    for (const auto& [suffix, m] : {std::pair{".lora_a", a}, {".lora_b", b}}) {
      const bool whole_blocks = !ggml::can_quantize(type) || m.shape(1) % 32 == 0;
      add_tensor(w, gguf + suffix, m, whole_blocks ? type : ggml::Type::F32);
    }
  }
  w.write(out);
}

}  // namespace ft::models
