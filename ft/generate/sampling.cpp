#include "ft/generate/sampling.h"

#include <limits>

#include <mlx/ops.h>
#include <mlx/random.h>

#include "ft/core/error.h"

namespace ft::generate {

namespace {

const float kInf = std::numeric_limits<float>::infinity();

mx::array as_vector(const mx::array& logits) {
  mx::array flat = logits.ndim() == 2 && logits.shape(0) == 1 ? mx::reshape(logits, {-1}) : logits;
  FT_CHECK(flat.ndim() == 1, "sampling", "logits must be (vocab,) or (1, vocab), got ndim ",
           logits.ndim());
  return mx::astype(flat, mx::float32);
}

mx::array remove_where_not(const mx::array& keep, const mx::array& logits) {
  return mx::where(keep, logits, mx::array(-kInf));
}

}  // namespace

void SamplingOptions::validate() const {
  FT_CHECK(temperature >= 0, "sampling", "temperature must not be negative, got ", temperature);
  FT_CHECK(top_k >= 0, "sampling", "top_k must not be negative, got ", top_k);
  FT_CHECK(top_p > 0 && top_p <= 1, "sampling", "top_p must be in (0, 1], got ", top_p);
  FT_CHECK(min_p >= 0 && min_p <= 1, "sampling", "min_p must be in [0, 1], got ", min_p);
  FT_CHECK(repetition_penalty > 0, "sampling", "repetition_penalty must be positive, got ",
           repetition_penalty);
}

mx::array apply_repetition_penalty(const mx::array& logits, const std::vector<int>& seen,
                                   float penalty) {
  mx::array x = as_vector(logits);
  FT_CHECK(penalty > 0, "sampling", "repetition_penalty must be positive, got ", penalty);
  if (penalty == 1.0f || seen.empty()) return x;
  int vocab = x.shape(0);
  std::vector<uint8_t> flags(vocab, 0);
  for (int id : seen)
    if (id >= 0 && id < vocab) flags[id] = 1;
  mx::array was_seen = mx::astype(mx::array(flags.data(), {vocab}, mx::uint8), mx::bool_);
  mx::array penalized = mx::where(x > 0.0f, x / penalty, x * penalty);
  return mx::where(was_seen, penalized, x);
}

mx::array top_k_filter(const mx::array& logits, int k) {
  mx::array x = as_vector(logits);
  FT_CHECK(k > 0, "sampling", "top_k must be positive, got ", k);
  int vocab = x.shape(0);
  if (k >= vocab) return x;
  mx::array kth = mx::take(mx::sort(x), vocab - k);  // the k-th largest value
  return remove_where_not(x >= kth, x);
}

mx::array top_p_filter(const mx::array& logits, float p) {
  mx::array x = as_vector(logits);
  FT_CHECK(p > 0 && p <= 1, "sampling", "top_p must be in (0, 1], got ", p);
  if (p >= 1.0f) return x;
  mx::array order = mx::argsort(-x);  // most likely first
  mx::array sorted_probs = mx::take(mx::softmax(x), order);
  mx::array mass_before = mx::cumsum(sorted_probs) - sorted_probs;
  // The first token is always kept, whatever rounding says.
  mx::array keep_sorted = mx::logical_or(mass_before < p, mx::arange(x.shape(0), mx::int32) == 0);
  mx::array keep = mx::take(keep_sorted, mx::argsort(order));  // back to vocabulary order
  return remove_where_not(keep, x);
}

mx::array min_p_filter(const mx::array& logits, float min_p) {
  mx::array x = as_vector(logits);
  FT_CHECK(min_p >= 0 && min_p <= 1, "sampling", "min_p must be in [0, 1], got ", min_p);
  if (min_p == 0.0f) return x;
  mx::array probs = mx::softmax(x);
  return remove_where_not(probs >= min_p * mx::max(probs), x);
}

mx::array process_logits(const mx::array& logits, const SamplingOptions& options,
                         const std::vector<int>& history) {
  mx::array x = apply_repetition_penalty(logits, history, options.repetition_penalty);
  if (options.temperature == 0.0f) return x;
  x = x / options.temperature;
  if (options.top_k > 0) x = top_k_filter(x, options.top_k);
  if (options.top_p < 1.0f) x = top_p_filter(x, options.top_p);
  if (options.min_p > 0.0f) x = min_p_filter(x, options.min_p);
  return x;
}

Sampler::Sampler(const SamplingOptions& options, uint64_t seed) : options_(options), rng_(seed) {
  options_.validate();
}

int Sampler::sample(const mx::array& logits, const std::vector<int>& history) {
  mx::array x = process_logits(logits, options_, history);
  mx::array token =
      options_.temperature == 0.0f ? mx::argmax(x) : mx::random::categorical(x, 0, rng_.next());
  return mx::astype(token, mx::int32).item<int>();
}

}  // namespace ft::generate
