// The families ft builds, one file each in this folder. FT_MODEL_FAMILIES lists them
// once: the registry (ft/models/registry.cpp) declares and collects every entry.
#pragma once

#include "ft/models/registry.h"

// X(name): ft::models::families::name() returns the family defined in families/<name>.cpp.
#define FT_MODEL_FAMILIES(X) \
  X(llama)                   \
  X(qwen)                    \
  X(gemma)                   \
  X(phi3)                    \
  X(phi)                     \
  X(gpt2)                    \
  X(mixtral)                 \
  X(lfm2)

namespace ft::models::families {

#define FT_DECLARE_FAMILY(name) Family name();
FT_MODEL_FAMILIES(FT_DECLARE_FAMILY)
#undef FT_DECLARE_FAMILY

// Pieces the family files share.

// The default LoRA targets of families with Llama's attention names.
inline const std::vector<std::string> kAttentionProjections = {"q_proj", "k_proj", "v_proj",
                                                               "o_proj"};

// Llama's pre-norm layers (families/llama.cpp) with the switches of c: attention and
// qkv biases, q/k RMSNorm, sliding windows, the MLP's activation and bias.
std::unique_ptr<CausalLM> build_llama(const Config& c, Rng& rng, mx::Dtype dtype);

// Drops Hugging Face's rotary inv_freq buffers and, when the embeddings are tied, a
// saved copy of lm_head (quantized or not).
void drop_buffers(ParamMap& weights, const Config& config);

// The config.json fields every family writes the same way (vocab, sizes, heads, the
// token ids, tie_word_embeddings, torch_dtype, ...), under Llama's names.
nlohmann::json common_init_config(const std::string& architecture, const std::string& model_type,
                                  const InitSizes& sizes);

}  // namespace ft::models::families
