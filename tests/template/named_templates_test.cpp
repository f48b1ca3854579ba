// The named chat templates (`--template chatml`): each renders its format's documented
// layout, llama3 and gemma render as the templates Llama 3 and Gemma 3 ship, and every one
// keeps the prefix property that masking the prompt needs.
#include "ft/template/named_templates.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <string>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "ft/core/error.h"
#include "ft/template/chat_template.h"
#include "tests/test_util.h"

using ft::chat::ChatTemplate;
using ft::chat::RenderOptions;
using json = nlohmann::ordered_json;

namespace {

const json kConversation = json::parse(R"([
  {"role": "system", "content": "Be brief."},
  {"role": "user", "content": "Hi"},
  {"role": "assistant", "content": "Hello!"},
  {"role": "user", "content": "2+2?"},
  {"role": "assistant", "content": "4"}
])");

const json kSpecials = {{"bos_token", "<s>"}, {"eos_token", "</s>"}};

std::string render(const std::string& name, const json& messages, bool generation_prompt,
                   const json& variables = kSpecials) {
  RenderOptions options;
  options.add_generation_prompt = generation_prompt;
  return ChatTemplate::from_spec(name, variables).render(messages, options);
}

TEST(NamedTemplates, EachRendersItsFormat) {
  // The layouts as each format's authors describe them, with BOS <s> and EOS </s>.
  const std::map<std::string, std::string> expected = {
      {"chatml",
       "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
       "<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n"
       "<|im_start|>assistant\n4<|im_end|>\n"},
      {"llama2",
       "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello! </s><s>[INST] 2+2? [/INST] "
       "4 </s>"},
      {"llama3",
       "<s><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
       "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
       "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>"
       "<|start_header_id|>user<|end_header_id|>\n\n2+2?<|eot_id|>"
       "<|start_header_id|>assistant<|end_header_id|>\n\n4<|eot_id|>"},
      {"mistral", "<s>[INST] Be brief.\n\nHi [/INST]Hello!</s>[INST] 2+2? [/INST]4</s>"},
      {"phi3",
       "<|system|>\nBe brief.<|end|>\n<|user|>\nHi<|end|>\n<|assistant|>\nHello!<|end|>\n"
       "<|user|>\n2+2?<|end|>\n<|assistant|>\n4<|end|>\n"},
      {"gemma",
       "<s><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\n"
       "Hello!<end_of_turn>\n<start_of_turn>user\n2+2?<end_of_turn>\n<start_of_turn>model\n"
       "4<end_of_turn>\n"},
      {"alpaca",
       "Be brief.\n\n### Instruction:\nHi\n\n### Response:\nHello!</s>\n\n"
       "### Instruction:\n2+2?\n\n### Response:\n4</s>\n\n"},
      {"vicuna", "Be brief. USER: Hi ASSISTANT: Hello!</s>USER: 2+2? ASSISTANT: 4</s>"},
      {"zephyr",
       "<|system|>\nBe brief.</s>\n<|user|>\nHi</s>\n<|assistant|>\nHello!</s>\n"
       "<|user|>\n2+2?</s>\n<|assistant|>\n4</s>\n"},
  };
  ASSERT_EQ(ft::chat::named_template_names().size(), expected.size());
  for (const std::string& name : ft::chat::named_template_names()) {
    ASSERT_TRUE(expected.count(name)) << name;
    EXPECT_EQ(render(name, kConversation, false), expected.at(name)) << name;
  }
}

TEST(NamedTemplates, WithoutSpecialTokensTheFormatsOwnAreUsed) {
  const json one = json::parse(R"([{"role": "user", "content": "Hi"},
                                   {"role": "assistant", "content": "Yo"}])");
  const json none = json::object();
  EXPECT_EQ(render("llama2", one, false, none), "<s>[INST] Hi [/INST] Yo </s>");
  EXPECT_EQ(render("zephyr", one, false, none), "<|user|>\nHi</s>\n<|assistant|>\nYo</s>\n");
  EXPECT_EQ(render("llama3", one, false, none),
            "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\nYo<|eot_id|>");
  // The customary system text of formats that always have one.
  EXPECT_EQ(render("vicuna", one, true, none).substr(0, 38),
            "A chat between a curious user and an a");
  EXPECT_TRUE(render("alpaca", one, false, none)
                  .starts_with("Below is an instruction that describes a task. Write a response "
                               "that appropriately completes the request.\n\n### Instruction:\n"));
  // A tokenizer whose bos_token is null (Qwen's) gets the format's default too.
  EXPECT_EQ(render("mistral", one, false, {{"bos_token", nullptr}, {"eos_token", "<|e|>"}}),
            "<s>[INST] Hi [/INST]Yo<|e|>");
}

TEST(NamedTemplates, PromptsRenderAsPrefixesOfTheWholeConversation) {
  // What masking the prompt relies on (tokenize_sample.cpp): the conversation up to each
  // user turn, with the generation prompt, begins the rendering of all of it.
  for (const std::string& name : ft::chat::named_template_names()) {
    const std::string whole = render(name, kConversation, false);
    for (size_t n : {2, 4}) {
      json head = json::array();
      for (size_t i = 0; i < n; ++i) head.push_back(kConversation[i]);
      const std::string prompt = render(name, head, true);
      EXPECT_TRUE(whole.starts_with(prompt)) << name << ": " << prompt << "\n---\n" << whole;
      EXPECT_GT(whole.size(), prompt.size()) << name;
    }
  }
}

// The templates Llama 3 and Gemma 3 ship (../shared/tokenizers) give the same text.
TEST(NamedTemplates, Llama3AndGemmaMatchTheTemplatesTheModelsShip) {
  if (!ft::testing::have_shared_tokenizers()) GTEST_SKIP() << "no shared tokenizers";
  const json no_system(kConversation.begin() + 1, kConversation.end());
  const json prompt(kConversation.begin(), kConversation.begin() + 4);
  for (const auto& [named, dir] : {std::pair{"llama3", "llama3"}, {"gemma", "gemma3"}}) {
    const ChatTemplate shipped =
        ChatTemplate::from_tokenizer_dir(ft::testing::shared_tokenizer(dir));
    const ChatTemplate ours = ChatTemplate::from_spec(named, shipped.variables());
    RenderOptions gen;
    gen.add_generation_prompt = true;
    // Llama 3's shipped template always ends with the generation prompt.
    const bool always = std::string(named) == "llama3";
    for (const json& messages : {kConversation, no_system, prompt}) {
      EXPECT_EQ(ours.render(messages, gen), shipped.render(messages, gen)) << named;
      if (!always) {
        EXPECT_EQ(ours.render(messages), shipped.render(messages)) << named;
      }
    }
  }
}

TEST(NamedTemplates, SpecIsANameOrAJinjaFile) {
  const std::filesystem::path file = std::filesystem::temp_directory_path() /
                                     ("ft-named-" + std::to_string(::getpid()) + ".jinja");
  std::ofstream(file) << "{% for m in messages %}[{{ m.role }}|{{ m.content }}]{% endfor %}"
                      << "{{ eos_token }}";
  EXPECT_EQ(ChatTemplate::from_spec(file.string(), kSpecials).render(kConversation),
            "[system|Be brief.][user|Hi][assistant|Hello!][user|2+2?][assistant|4]</s>");
  std::filesystem::remove(file);

  ft::testing::expect_error(
      [] { ChatTemplate::from_spec("chatm", kSpecials); },
      "unknown template 'chatm' (known: chatml, llama2, llama3, mistral, phi3, gemma, "
      "alpaca, vicuna, zephyr; or give a .jinja file)");
  ft::testing::expect_error([] { ChatTemplate::from_spec("/nonexistent/t.jinja", kSpecials); },
                            "/nonexistent/t.jinja: no such template file");
  EXPECT_FALSE(ft::chat::named_template_source("ChatML").has_value());
}

}  // namespace
