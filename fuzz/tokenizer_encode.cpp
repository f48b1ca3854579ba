// Encoding and decoding arbitrary bytes (invalid UTF-8 included) with real tokenizers:
// the first byte picks the tokenizer, the rest is the text; the text's bytes also serve
// as token ids for decode.
#include <memory>
#include <vector>

#include "ft/tokenizer/tokenizer.h"
#include "fuzz/fuzz_target.h"

namespace {

// The small tokenizers of the repository, one per model type and pipeline.
const std::vector<std::unique_ptr<ft::tokenizer::Tokenizer>>& tokenizers() {
  static const auto loaded = [] {
    std::vector<std::unique_ptr<ft::tokenizer::Tokenizer>> out;
    for (const char* name : {"byte_level", "metaspace_first", "sp_bpe", "unigram", "wordpiece"})
      out.push_back(std::make_unique<ft::tokenizer::Tokenizer>(ft::tokenizer::Tokenizer::from_dir(
          std::string(FT_SOURCE_DIR) + "/tests/golden/tokenizer/" + name)));
    return out;
  }();
  return loaded;
}

}  // namespace

FT_FUZZ_TARGET(tokenizer_encode) {
  if (size == 0) return 0;
  const auto& all = tokenizers();
  const auto& tok = *all[data[0] % all.size()];
  const std::string_view text = ft::fuzz::bytes(data + 1, size - 1);
  const auto ids = tok.encode(text, /*add_special_tokens=*/data[0] & 0x80);
  tok.decode(ids, data[0] & 0x40);
  std::vector<int> arbitrary;
  for (size_t i = 1; i + 1 < size; i += 2)
    arbitrary.push_back((data[i] | data[i + 1] << 8) - 16);  // some negative, some past the end
  tok.decode(arbitrary, data[0] & 0x20);
  return 0;
}
