// Choosing the next token from logits: greedy, or sampling with temperature, top-k,
// top-p and min-p, after a repetition penalty. The processors follow Hugging Face
// transformers' semantics and order (repetition penalty, temperature, top-k, top-p,
// min-p); every random draw takes a key from an explicit seed, so the same seed gives
// the same tokens.
#pragma once

#include <cstdint>
#include <vector>

#include <mlx/array.h>

#include "ft/core/random.h"

namespace ft::generate {

namespace mx = mlx::core;

struct SamplingOptions {
  float temperature = 0.0f;         // 0: greedy (argmax); otherwise logits / temperature
  int top_k = 0;                    // > 0: keep the k most likely tokens (ties kept)
  float top_p = 1.0f;               // < 1: keep the fewest likeliest tokens reaching mass p
  float min_p = 0.0f;               // > 0: keep tokens with p >= min_p * the largest p
  float repetition_penalty = 1.0f;  // > 1 discourages tokens already seen
  // Throws ft::Error naming the first out-of-range field.
  void validate() const;
};

// The processors, each on logits (vocab,) float, returning (vocab,) float32 with the
// removed tokens at -inf. At least one token always survives.
//
// Hugging Face's RepetitionPenaltyLogitsProcessor: the logit of each token in `seen`
// is divided by penalty when positive and multiplied by it otherwise.
mx::array apply_repetition_penalty(const mx::array& logits, const std::vector<int>& seen,
                                   float penalty);
// Tokens whose logit is below the k-th largest are removed.
mx::array top_k_filter(const mx::array& logits, int k);
// In order of decreasing probability, a token is kept while the probability mass of the
// tokens before it is below p.
mx::array top_p_filter(const mx::array& logits, float p);
// Tokens with probability below min_p times the largest probability are removed.
mx::array min_p_filter(const mx::array& logits, float min_p);

// The logits the draw is made from: every processor the options enable, in Hugging
// Face's order. history: the token ids the repetition penalty looks at.
mx::array process_logits(const mx::array& logits, const SamplingOptions& options,
                         const std::vector<int>& history);

class Sampler {
 public:
  // Throws ft::Error for invalid options.
  Sampler(const SamplingOptions& options, uint64_t seed);
  // logits: (vocab,) or (1, vocab) -> the chosen token id. Each call with temperature
  // > 0 takes the next key of the seed's sequence.
  int sample(const mx::array& logits, const std::vector<int>& history);
  const SamplingOptions& options() const { return options_; }

 private:
  SamplingOptions options_;
  Rng rng_;
};

}  // namespace ft::generate
