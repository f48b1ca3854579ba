// ft export --format gguf: a model (with an adapter merged) as a GGUF file llama.cpp reads,
// written by ft itself (io::GgufWriter, ggml::quantize).
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

#include "ft/io/ggml_quants.h"

namespace ft::models {

// A GGUF file's type as llama.cpp names it (general.file_type, its LLAMA_FTYPE_* numbers):
// one type for every matrix, or Q4_K_M's mixture chosen per tensor (Note [Q4_K_M] in
// export_gguf.cpp). Norms and other vectors stay F32, and a matrix whose rows are not whole
// blocks of its type falls back as llama.cpp's quantizer falls back (to F32 at last).
enum class GgufFileType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q8_0 = 7,
  Q4_K_M = 15,
  BF16 = 32,
};
// "f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q4_k_m" (any case); throws ft::Error naming
// the choices for another name.
GgufFileType parse_gguf_file_type(const std::string& name);
std::string gguf_file_type_name(GgufFileType type);

struct GgufExportOptions {
  GgufFileType type = GgufFileType::F16;
  std::optional<std::filesystem::path> adapter;  // merged first
};

// Loads model (a folder or a GGUF file), merges the adapter, dequantizes, and writes out:
// llama.cpp's metadata for the architecture, its tensor names and q/k row order,
// general.file_type, and the tokenizer (the source GGUF file's metadata, or a folder's
// tokenizer files converted: Note [GGUF tokenizers out] in io/gguf_tokenizer.cpp). Throws
// ft::Error before writing anything for an unsupported model, tokenizer or type.
void export_gguf(const std::filesystem::path& model, const std::filesystem::path& out,
                 const GgufExportOptions& options);

// ft export --format gguf-lora: the adapter alone as llama.cpp's LoRA adapter file
// (general.type "adapter", adapter.type "lora", adapter.lora.alpha, and for each adapted
// module "<its GGUF tensor name>.lora_a" (r, in) and ".lora_b" (out, r), in llama.cpp's
// q/k row order), for `llama-cli --lora` over a GGUF of the base model. type: F32, F16, BF16
// or Q8_0 (a matrix whose rows are not whole blocks stays F32). Throws ft::Error before
// writing anything for DoRA or stacked expert adapters, which the format cannot hold, and
// for an architecture ft does not write.
void export_gguf_lora(const std::filesystem::path& model, const std::filesystem::path& adapter,
                      const std::filesystem::path& out, GgufFileType type);

}  // namespace ft::models
