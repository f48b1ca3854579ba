// The tokenizer a GGUF file carries (tokenizer.ggml.*), as the tokenizer.json and
// tokenizer_config.json that transformers' GGUF conversion makes of it, so that ft's
// Tokenizer gives the same ids (Note [GGUF tokenizers] in gguf_tokenizer.cpp).
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "ft/io/gguf_file.h"
#include "ft/template/chat_template.h"
#include "ft/tokenizer/tokenizer.h"

namespace ft::io {

struct TokenizerFiles {
  std::string tokenizer_json;
  std::string tokenizer_config_json;  // special tokens, add_bos_token, chat_template
};

// Throws ft::Error naming the file and the key for a missing or ill-typed tokenizer key, and
// for tokenizer models ft does not convert: it reads "gpt2" (byte-level BPE) and "llama"
// (SentencePiece-style BPE) but not gemma's or phi3's variants of the latter, nor "t5".
TokenizerFiles gguf_tokenizer_files(const GgufFile& gguf);
tokenizer::Tokenizer gguf_tokenizer(const GgufFile& gguf);
tokenizer::Tokenizer gguf_tokenizer(const TokenizerFiles& files, const std::string& source);
// The chat template of tokenizer.chat_template, seeing the special tokens as variables;
// nullopt when the files carry none.
std::optional<chat::ChatTemplate> gguf_chat_template(const TokenizerFiles& files);

// The tokenizer.* metadata llama.cpp reads, made from a model folder's tokenizer files
// (tokenizer.json, tokenizer_config.json, the chat template), the vocabulary padded to the
// model's `vocab_size` embedding rows (Note [GGUF tokenizers out] in gguf_tokenizer.cpp).
// Byte-level and SentencePiece-style BPE vocabularies are written; throws ft::Error naming
// the file for what llama.cpp would not tokenize as the folder does (another model type, an
// unknown pre-tokenizer or normalizer) and for more tokens than the model has rows.
std::vector<std::pair<std::string, GgufValue>> gguf_tokenizer_metadata(
    const std::filesystem::path& folder, int64_t vocab_size);

}  // namespace ft::io
