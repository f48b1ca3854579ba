// One line of a JSONL dataset through everything `ft data` does with it: parsed, its
// format detected, converted in each of the six formats, and tokenized with a chat
// template (prompt masking on and off) or without one.
#include "ft/data/records.h"
#include "ft/data/tokenize_sample.h"
#include "fuzz/fuzz_target.h"

namespace {

const ft::tokenizer::Tokenizer& tokenizer() {
  static const auto tok = ft::tokenizer::Tokenizer::from_dir(std::string(FT_SOURCE_DIR) +
                                                             "/tests/golden/tokenizer/byte_level");
  return tok;
}

// ChatML, as Qwen's templates write it, with tool calls.
const ft::chat::ChatTemplate& chat_template() {
  static const auto chat = ft::chat::ChatTemplate::from_string(
      "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
      "{% if m['content'] is string %}{{ m['content'] }}{% else %}{{ m['content'] | tojson }}"
      "{% endif %}{% for c in m.get('tool_calls', []) %}{{ c | tojson }}{% endfor %}"
      "<|im_end|>\n{% endfor %}{% if tools %}{{ tools | tojson }}{% endif %}"
      "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}");
  return chat;
}

}  // namespace

FT_FUZZ_TARGET(jsonl_record) {
  using ft::data::Format;
  return ft::fuzz::refusing([&] {
    const auto record = ft::data::parse_record(ft::fuzz::bytes(data, size), "fuzz.jsonl:1");
    ft::fuzz::refusing([&] { ft::data::detect_format(record, "fuzz.jsonl:1"); });
    for (Format format :
         {Format::kText, Format::kCompletions, Format::kChat, Format::kAlpaca, Format::kShareGpt})
      ft::fuzz::refusing([&] {
        const auto converted = ft::data::to_record(record, format, "fuzz.jsonl:1");
        for (bool mask_prompt : {false, true})
          ft::fuzz::refusing([&] {
            ft::data::SampleTokenizer(tokenizer(), &chat_template(),
                                      {.mask_prompt = mask_prompt, .max_seq_length = 64})
                .tokenize(converted, "fuzz.jsonl:1");
          });
        ft::fuzz::refusing([&] {
          ft::data::SampleTokenizer(tokenizer(), nullptr, {}).tokenize(converted, "fuzz.jsonl:1");
        });
      });
  });
}
