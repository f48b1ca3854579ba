// The generation loop: a prompt's ids in, tokens out one at a time through a KV cache,
// with the text streamed to a callback as it becomes final.
//
//   GenerateOptions options{.max_tokens = 64, .eos_ids = tokenizer.eos_token_ids()};
//   auto result = generate(model, tokenizer.encode(prompt), options, decode_with(tokenizer),
//                          [](const std::string& piece) { std::cout << piece << std::flush; });
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "ft/generate/sampling.h"
#include "ft/models/causal_lm.h"

namespace ft::tokenizer {
class Tokenizer;  // ft/tokenizer/tokenizer.h
}

namespace ft::generate {

struct GenerateOptions {
  int max_tokens = 256;
  SamplingOptions sampling{};
  uint64_t seed = 0;
  // Generation ends before any of these ids (the id itself is not part of the result).
  std::vector<int> eos_ids{};
  // Generation ends when the text contains one of these; the text is cut where the
  // first occurrence begins and nothing from it is streamed.
  std::vector<std::string> stop{};
  // The prompt runs through the model in chunks of this many tokens.
  int prefill_chunk = 512;
  // The KV cache grows by this many positions at a time.
  int cache_step = 256;
};

struct GenerateResult {
  std::vector<int> ids;       // generated ids, the prompt excluded
  std::string text;           // their text, cut at a stop string
  std::string finish_reason;  // "eos", "stop" or "length"
};

// Text of generated ids.
using DecodeFn = std::function<std::string(const std::vector<int>&)>;
// Receives each new piece of text; the pieces concatenate to GenerateResult::text.
// Text is held back while it could still be the start of a stop string or ends in an
// incomplete UTF-8 character.
using TextCallback = std::function<void(const std::string& piece)>;

// Generates from a non-empty prompt (ids of batch 1). Throws ft::Error for an empty
// prompt, ids outside the vocabulary, or invalid options.
GenerateResult generate(models::CausalLM& model, const std::vector<int>& prompt,
                        const GenerateOptions& options, const DecodeFn& decode,
                        const TextCallback& on_text = {});

// decode() of a tokenizer, special tokens skipped.
DecodeFn decode_with(const tokenizer::Tokenizer& tokenizer);

}  // namespace ft::generate
