// tokenizer.json loading: every model, normalizer, pre-tokenizer, post-processor and
// decoder type with its options, the added tokens and the vocabulary; then a short text
// through the tokenizer that loaded.
#include "ft/tokenizer/tokenizer.h"
#include "fuzz/fuzz_target.h"

FT_FUZZ_TARGET(tokenizer_json) {
  return ft::fuzz::refusing([&] {
    const auto tok = ft::tokenizer::Tokenizer::from_json_text(ft::fuzz::bytes(data, size));
    const auto ids = tok.encode("Hello, wörld! 12 34 <s>\n\t x");
    tok.decode(ids);
    tok.decode(ids, /*skip_special_tokens=*/true);
  });
}
