#include "ft/generate/generate.h"

#include <algorithm>

#include <mlx/ops.h>
#include <mlx/transforms.h>

#include "ft/core/error.h"
#include "ft/core/evaluate.h"
#include "ft/models/cache.h"
#include "ft/tokenizer/tokenizer.h"

namespace ft::generate {

namespace {

// Where the first stop string starts in text, npos when none occurs.
size_t first_stop(const std::string& text, const std::vector<std::string>& stop) {
  size_t first = std::string::npos;
  for (const std::string& s : stop) first = std::min(first, text.find(s));
  return first;
}

// How much of text is final while generation goes on: not a tail that could begin a
// stop string, nor a replacement character that a later token may complete.
size_t final_length(const std::string& text, const std::vector<std::string>& stop) {
  size_t length = text.size();
  const std::string replacement = "\xEF\xBF\xBD";  // U+FFFD: an incomplete UTF-8 sequence
  if (text.ends_with(replacement)) length -= replacement.size();
  size_t safe = length;
  for (const std::string& s : stop)
    for (size_t n = std::min(s.size() - 1, length); n > 0; --n)
      if (text.compare(length - n, n, s, 0, n) == 0) {
        safe = std::min(safe, length - n);
        break;
      }
  return safe;
}

}  // namespace

GenerateResult generate(models::CausalLM& model, const std::vector<int>& prompt,
                        const GenerateOptions& options, const DecodeFn& decode,
                        const TextCallback& on_text) {
  FT_CHECK(!prompt.empty(), "generate", "the prompt is empty");
  FT_CHECK(options.max_tokens >= 0, "generate", "max_tokens must not be negative, got ",
           options.max_tokens);
  FT_CHECK(options.prefill_chunk > 0, "generate", "prefill_chunk must be positive");
  for (const std::string& s : options.stop)
    FT_CHECK(!s.empty(), "generate", "a stop string is empty");
  int vocab = model.config().vocab_size;
  for (int id : prompt)
    FT_CHECK(id >= 0 && id < vocab, "generate", "prompt token id ", id,
             " is outside the vocabulary (", vocab, ")");
  Sampler sampler(options.sampling, options.seed);
  models::Cache cache = model.make_cache(options.cache_step);

  // Runs ids through the model in chunks onto the cache; the last position's logits.
  // A sequence that crosses the model's rope switch goes in one piece (see
  // CausalLM::rope_switch_length).
  const int rope_switch = model.rope_switch_length();
  auto prefill = [&](const std::vector<int>& ids) {
    int length = static_cast<int>(ids.size());
    int chunk_size = rope_switch > 0 && length > rope_switch ? length : options.prefill_chunk;
    mx::array last = mx::array(0.0f);
    for (int begin = 0; begin < length; begin += chunk_size) {
      int end = std::min(length, begin + chunk_size);
      std::vector<int32_t> chunk(ids.begin() + begin, ids.begin() + end);
      mx::array out = model.forward(mx::array(chunk.data(), {1, end - begin}, mx::int32), cache);
      last = mx::reshape(mx::slice(out, {0, end - begin - 1, 0}, {1, end - begin, vocab}), {vocab});
      evaluate({last});
    }
    return last;
  };
  mx::array logits = prefill(prompt);

  GenerateResult result;
  result.finish_reason = "length";
  std::vector<int> history = prompt;  // what the repetition penalty looks at
  size_t emitted = 0;                 // bytes of text handed to on_text
  auto emit_up_to = [&](size_t end) {
    if (end > emitted && on_text) on_text(result.text.substr(emitted, end - emitted));
    emitted = std::max(emitted, end);
  };
  for (int step = 0; step < options.max_tokens; ++step) {
    int token = sampler.sample(logits, history);
    if (std::find(options.eos_ids.begin(), options.eos_ids.end(), token) != options.eos_ids.end()) {
      result.finish_reason = "eos";
      break;
    }
    result.ids.push_back(token);
    history.push_back(token);
    result.text = decode(result.ids);
    size_t stop_at = first_stop(result.text, options.stop);
    if (stop_at != std::string::npos) {
      result.text.resize(stop_at);
      result.finish_reason = "stop";
      break;
    }
    emit_up_to(final_length(result.text, options.stop));
    if (step + 1 == options.max_tokens) break;  // no forward for a token never sampled
    if (rope_switch > 0 && cache.offset() == rope_switch) {
      // The next position is past the switch: every key is rotated anew.
      cache = model.make_cache(options.cache_step);
      logits = prefill(history);
      continue;
    }
    int32_t next = token;
    logits = mx::reshape(model.forward(mx::array(&next, {1, 1}, mx::int32), cache), {vocab});
    evaluate({logits});
  }
  emit_up_to(result.text.size());
  return result;
}

DecodeFn decode_with(const tokenizer::Tokenizer& tokenizer) {
  return [&tokenizer](const std::vector<int>& ids) { return tokenizer.decode(ids, true); };
}

}  // namespace ft::generate
