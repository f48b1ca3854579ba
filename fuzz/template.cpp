// The Jinja engine: lexer, parser and interpreter on an arbitrary template, rendered
// with a short conversation, tools and the special tokens real templates read. Seeded
// with the chat templates of real models.
#include <nlohmann/json.hpp>

#include "ft/template/ast.h"
#include "ft/template/interpreter.h"
#include "fuzz/fuzz_target.h"

namespace {

const ft::jinja::Value& variables() {
  static const ft::jinja::Value vars =
      ft::jinja::Value::from_json(nlohmann::ordered_json::parse(R"({
    "messages": [
      {"role": "system", "content": "Be brief."},
      {"role": "user", "content": "What is 2+2?"},
      {"role": "assistant", "content": "4", "reasoning_content": "Add.",
       "tool_calls": [{"type": "function", "function": {"name": "add", "arguments": {"a": 2, "b": 2}}}]},
      {"role": "tool", "content": "4"},
      {"role": "user", "content": [{"type": "text", "text": "Thanks"}, {"type": "image"}]}
    ],
    "tools": [{"type": "function", "function": {"name": "add", "description": "Adds.",
               "parameters": {"type": "object", "properties": {"a": {"type": "integer"}},
                              "required": ["a"]}}}],
    "bos_token": "<s>", "eos_token": "</s>", "add_generation_prompt": true,
    "enable_thinking": false
  })"));
  return vars;
}

}  // namespace

FT_FUZZ_TARGET(template) {
  return ft::fuzz::refusing([&] {
    const ft::jinja::Body body = ft::jinja::parse(std::string(ft::fuzz::bytes(data, size)));
    // A smaller step budget than ft's own keeps each input fast; the limit is the same code.
    ft::jinja::Interpreter().render(body, variables(), /*max_steps=*/200000);
  });
}
