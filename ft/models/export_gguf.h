// ft export --format gguf: a model (with an adapter merged) as a GGUF file llama.cpp reads,
// written by ft itself (io::GgufWriter, ggml::quantize).
#pragma once

#include <filesystem>
#include <optional>

#include "ft/io/ggml_quants.h"

namespace ft::models {

struct GgufExportOptions {
  // F32, F16, BF16, Q8_0, Q4_0 or Q4_1: the matrices' type. Norms and other vectors stay
  // F32, and a matrix whose rows are not whole 32-value blocks stays F32 in the quantized
  // types, as llama.cpp's converter and quantizer leave them.
  io::ggml::Type type = io::ggml::Type::F16;
  std::optional<std::filesystem::path> adapter;  // merged first
};

// Loads model (a folder or a GGUF file), merges the adapter, dequantizes, and writes out:
// llama.cpp's metadata for the architecture (llama so far), its tensor names and q/k row
// order, general.file_type, and the tokenizer. The tokenizer is the source GGUF file's
// metadata; from a folder's tokenizer files it is not converted yet (an ft::Error says
// so). Throws ft::Error before writing anything for an unsupported model or type.
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
                      const std::filesystem::path& out, io::ggml::Type type);

}  // namespace ft::models
