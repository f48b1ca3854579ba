#include "ft/template/named_templates.h"

#include <utility>

// Note [Named templates]
// ~~~~~~~~~~~~~~~~~~~~~~
// Each template renders messages ({"role", "content"} with roles system, user and
// assistant) in a well-known conversation format, written for ft's Jinja interpreter:
//
//   chatml   <|im_start|>ROLE\nTEXT<|im_end|>\n                    (Qwen, SmolLM, Hermes)
//   llama2   BOS[INST] <<SYS>>\nSYSTEM\n<</SYS>>\n\nUSER [/INST] ANSWER EOS
//   llama3   BOS<|start_header_id|>ROLE<|end_header_id|>\n\nTEXT<|eot_id|>
//   mistral  BOS[INST] SYSTEM\n\nUSER [/INST]ANSWEREOS
//   phi3     <|ROLE|>\nTEXT<|end|>\n
//   gemma    BOS<start_of_turn>user\nSYSTEM\n\nUSER<end_of_turn>\n<start_of_turn>model\n...
//   alpaca   SYSTEM\n\n### Instruction:\nUSER\n\n### Response:\nANSWEREOS\n\n
//   vicuna   SYSTEM USER: USER ASSISTANT: ANSWEREOS
//   zephyr   <|ROLE|>\nTEXTEOS\n
//
// BOS and EOS are the tokenizer's own bos_token and eos_token, so that a model trained in
// a borrowed format still ends its answers with the token generation stops at; where the
// tokenizer has none, the format's (<s>, </s>; nothing for llama3's and gemma's BOS).
// Formats without a system turn fold the system message into the first user turn; alpaca
// and vicuna use their customary system text when the conversation has none. Rendering
// a conversation's first messages with add_generation_prompt always gives a prefix of
// rendering all of them, which is what masking the prompt needs (tokenize_sample.cpp).

namespace ft::chat {
namespace {

// Every template starts with: bos and eos, the tokenizer's tokens, else the format's
// defaults; system, a first system message's text ('' when there is none), and turns, the
// messages after it.
constexpr std::string_view kPrelude = R"(
{%- set bos = bos_token if bos_token is defined and bos_token else default_bos -%}
{%- set eos = eos_token if eos_token is defined and eos_token else default_eos -%}
{%- if messages and messages[0]['role'] == 'system' -%}
{%- set system = messages[0]['content'] -%}
{%- set turns = messages[1:] -%}
{%- else -%}
{%- set system = '' -%}
{%- set turns = messages -%}
{%- endif -%}
)";

constexpr std::string_view kChatml = R"(
{%- for message in messages -%}
{{- '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\n' -}}{%- endif -%}
)";

constexpr std::string_view kLlama2 = R"(
{%- set system = '<<SYS>>\n' + system + '\n<</SYS>>\n\n' if system else '' -%}
{%- for message in turns -%}
{%- if message['role'] == 'user' -%}
{{- bos + '[INST] ' + (system if loop.first else '')
    + message['content'] | trim + ' [/INST]' -}}
{%- elif message['role'] == 'assistant' -%}
{{- ' ' + message['content'] | trim + ' ' + eos -}}
{%- endif -%}
{%- endfor -%}
)";

constexpr std::string_view kLlama3 = R"(
{{- bos -}}
{%- for message in messages -%}
{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'
    + message['content'] | trim + '<|eot_id|>' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}
{{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}
{%- endif -%}
)";

constexpr std::string_view kMistral = R"(
{%- set system = system + '\n\n' if system else '' -%}
{{- bos -}}
{%- for message in turns -%}
{%- if message['role'] == 'user' -%}
{{- '[INST] ' + (system if loop.first else '') + message['content'] + ' [/INST]' -}}
{%- elif message['role'] == 'assistant' -%}
{{- message['content'] + eos -}}
{%- endif -%}
{%- endfor -%}
)";

constexpr std::string_view kPhi3 = R"(
{%- for message in messages -%}
{{- '<|' + message['role'] + '|>\n' + message['content'] + '<|end|>\n' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}{{- '<|assistant|>\n' -}}{%- endif -%}
)";

constexpr std::string_view kGemma = R"(
{%- set system = system + '\n\n' if system else '' -%}
{{- bos -}}
{%- for message in turns -%}
{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}
{{- '<start_of_turn>' + role + '\n' + (system if loop.first else '')
    + message['content'] | trim + '<end_of_turn>\n' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}{{- '<start_of_turn>model\n' -}}{%- endif -%}
)";

constexpr std::string_view kAlpaca = R"(
{%- set system = system or ('Below is an instruction that describes a task. '
    + 'Write a response that appropriately completes the request.') -%}
{{- system + '\n\n' -}}
{%- for message in turns -%}
{%- if message['role'] == 'user' -%}
{{- '### Instruction:\n' + message['content'] + '\n\n' -}}
{%- elif message['role'] == 'assistant' -%}
{{- '### Response:\n' + message['content'] + eos + '\n\n' -}}
{%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}{{- '### Response:\n' -}}{%- endif -%}
)";

constexpr std::string_view kVicuna = R"(
{%- set system = system or ('A chat between a curious user and an artificial intelligence '
    + 'assistant. ' + "The assistant gives helpful, detailed, and polite answers to the user's questions.") -%}
{{- system + ' ' -}}
{%- for message in turns -%}
{%- if message['role'] == 'user' -%}
{{- 'USER: ' + message['content'] + ' ' -}}
{%- elif message['role'] == 'assistant' -%}
{{- 'ASSISTANT: ' + message['content'] + eos -}}
{%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}{{- 'ASSISTANT:' -}}{%- endif -%}
)";

constexpr std::string_view kZephyr = R"(
{%- for message in messages -%}
{{- '<|' + message['role'] + '|>\n' + message['content'] + eos + '\n' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}{{- '<|assistant|>\n' -}}{%- endif -%}
)";

struct Named {
  std::string_view name;
  std::string_view body;
  std::string_view default_bos, default_eos;
};

// In the order names are listed.
constexpr Named kNamed[] = {
    {"chatml", kChatml, "", ""},     {"llama2", kLlama2, "<s>", "</s>"},
    {"llama3", kLlama3, "", ""},     {"mistral", kMistral, "<s>", "</s>"},
    {"phi3", kPhi3, "", ""},         {"gemma", kGemma, "", ""},
    {"alpaca", kAlpaca, "", "</s>"}, {"vicuna", kVicuna, "", "</s>"},
    {"zephyr", kZephyr, "", "</s>"},
};

}  // namespace

const std::vector<std::string>& named_template_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> out;
    for (const Named& n : kNamed) out.emplace_back(n.name);
    return out;
  }();
  return names;
}

std::optional<std::string> named_template_source(std::string_view name) {
  for (const Named& n : kNamed) {
    if (n.name != name) continue;
    // The defaults as Jinja string literals; none holds a quote or a backslash.
    std::string source = "{%- set default_bos = '" + std::string(n.default_bos) +
                         "' -%}{%- set default_eos = '" + std::string(n.default_eos) + "' -%}";
    source += kPrelude;
    source += n.body;
    return source;
  }
  return std::nullopt;
}

}  // namespace ft::chat
