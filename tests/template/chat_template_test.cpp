// Parity with transformers' apply_chat_template: tests/golden/chat_templates/cases.json
// holds templates, conversations and the text (or raise_exception message) that
// transformers and jinja2 produced for them (make_chat_template_fixtures.py).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "ft/core/error.h"
#include "ft/template/chat_template.h"
#include "tests/test_util.h"

using ft::chat::ChatTemplate;
using ft::chat::RenderOptions;
using json = nlohmann::ordered_json;

namespace {

const json& fixtures() {
  static const json data = [] {
    std::ifstream in(std::string(FT_TEST_DATA) + "/chat_templates/cases.json");
    return json::parse(in);
  }();
  return data;
}

const ChatTemplate& template_named(const std::string& name) {
  static std::map<std::string, ChatTemplate> cache;
  auto it = cache.find(name);
  if (it != cache.end()) return it->second;
  const json& spec = fixtures()["templates"][name];
  ChatTemplate t =
      spec.contains("dir")
          ? ChatTemplate::from_tokenizer_dir(
                ft::testing::shared_tokenizer(spec["dir"].get<std::string>()))
          : ChatTemplate::from_string(spec["source"].get<std::string>(), spec["variables"]);
  return cache.emplace(name, std::move(t)).first->second;
}

class ChatTemplateParity : public ::testing::TestWithParam<std::string> {};

TEST_P(ChatTemplateParity, RendersLikeTransformers) {
  if (fixtures()["templates"][GetParam()].contains("dir")) FT_REQUIRE_SHARED_TOKENIZERS();
  const std::string name = GetParam();
  const ChatTemplate& t = template_named(name);
  int checked = 0;
  for (const json& c : fixtures()["cases"]) {
    if (c["template"] != name) continue;
    RenderOptions options;
    options.add_generation_prompt = c["add_generation_prompt"].get<bool>();
    options.tools = c["tools"];
    options.documents = c["documents"];
    options.variables = c["kwargs"];
    std::string what = name + " / " + c["conversation"].get<std::string>() +
                       " / add_generation_prompt=" + std::to_string(options.add_generation_prompt) +
                       " tools=" + std::to_string(!options.tools.is_null()) +
                       " documents=" + std::to_string(!options.documents.is_null()) + " " +
                       c["kwargs"].dump();
    ++checked;
    if (c.contains("expected")) {
      try {
        EXPECT_EQ(t.render(c["messages"], options), c["expected"].get<std::string>()) << what;
      } catch (const ft::Error& e) {
        ADD_FAILURE() << what << ": " << e.what();
      }
      continue;
    }
    try {
      t.render(c["messages"], options);
      ADD_FAILURE() << what << ": rendered, but transformers raised";
    } catch (const ft::Error& e) {
      if (c["error"].is_string()) {
        EXPECT_EQ(e.fact(), c["error"].get<std::string>()) << what;
      }
    }
  }
  EXPECT_GT(checked, 10);
}

INSTANTIATE_TEST_SUITE_P(Templates, ChatTemplateParity,
                         ::testing::Values("qwen3", "llama3", "gemma3", "chatml", "llama2",
                                           "mistral", "phi3", "language"));

TEST(ChatTemplateDir, SpecialTokensMatchTransformers) {
  FT_REQUIRE_SHARED_TOKENIZERS();
  for (const char* name : {"qwen3", "llama3", "gemma3"}) {
    const json& expected = fixtures()["templates"][name]["special_tokens_map"];
    const json& vars = template_named(name).variables();
    for (const auto& [k, v] : vars.items())
      EXPECT_EQ(expected.value(k, json()), v) << name << " " << k;
    EXPECT_TRUE(vars.contains("eos_token")) << name;
  }
}

}  // namespace

namespace {

// A tokenizer folder written by the test: named templates in tokenizer_config.json,
// then a chat_template.jinja beside it, which transformers reads instead.
TEST(ChatTemplateDir, NamedTemplatesAndJinjaFile) {
  namespace fs = std::filesystem;
  fs::path dir = fs::temp_directory_path() / ("ft_chat_dir_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  json config = {{"bos_token", {{"content", "<B>"}, {"lstrip", false}}},
                 {"eos_token", "<E>"},
                 {"chat_template",
                  {{{"name", "default"}, {"template", "D{{ bos_token }}{{ messages | length }}"}},
                   {{"name", "tool_use"},
                    {"template", "T{{ tools | length if tools else 0 }}{{ eos_token }}"}}}}};
  std::ofstream(dir / "tokenizer_config.json") << config.dump();
  json messages = json::array({{{"role", "user"}, {"content", "x"}}});
  auto t = ChatTemplate::from_tokenizer_dir(dir);
  EXPECT_EQ(t.names(), (std::vector<std::string>{"default", "tool_use"}));
  EXPECT_EQ(t.render(messages), "D<B>1");
  RenderOptions with_tools;
  with_tools.tools = json::array({json::object(), json::object()});
  EXPECT_EQ(t.render(messages, with_tools), "T2<E>");
  EXPECT_EQ(ChatTemplate::from_tokenizer_dir(dir, "tool_use").render(messages), "T0<E>");
  EXPECT_THROW(ChatTemplate::from_tokenizer_dir(dir, "nope"), ft::Error);

  std::ofstream(dir / "chat_template.jinja") << "J{{ messages[0].content }}\n";
  auto file_template = ChatTemplate::from_tokenizer_dir(dir);
  EXPECT_EQ(file_template.names(), (std::vector<std::string>{"default"}));
  EXPECT_EQ(file_template.render(messages, with_tools), "Jx");  // the final newline is dropped
  fs::remove_all(dir);
}

TEST(ChatTemplateDir, ErrorsNameTheTemplatePlace) {
  try {
    ChatTemplate::from_string("{% for m in messages %}\n{{ m.content | bogus }}{% endfor %}");
    FAIL();
  } catch (const ft::Error& e) {
    EXPECT_STREQ(e.what(), "[chat_template] template: line 2, column 16: no filter named 'bogus'");
  }
}

}  // namespace
