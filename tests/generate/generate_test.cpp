// The generation loop against a reference without a cache, and its stopping rules.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include <mlx/ops.h>

#include "ft/generate/generate.h"
#include "ft/models/registry.h"
#include "tests/test_util.h"

namespace mx = mlx::core;
namespace fs = std::filesystem;
using ft::generate::GenerateOptions;

namespace {

const fs::path kModels = fs::path(FT_TEST_DATA) / "models";

// One character per id, so stop strings and streaming can be checked on models
// without a tokenizer: id i decodes to 'a' + i % 26.
std::string letters(const std::vector<int>& ids) {
  std::string text;
  for (int id : ids) text += static_cast<char>('a' + id % 26);
  return text;
}

// Greedy decoding the slow way: the full forward over the whole sequence at each step.
std::vector<int> greedy_without_cache(ft::models::CausalLM& model, std::vector<int> ids,
                                      int steps) {
  std::vector<int> generated;
  for (int i = 0; i < steps; ++i) {
    std::vector<int32_t> row(ids.begin(), ids.end());
    mx::array logits = model(mx::array(row.data(), {1, static_cast<int>(row.size())}, mx::int32));
    int last = static_cast<int>(row.size()) - 1;
    mx::array next = mx::argmax(mx::slice(logits, {0, last, 0}, {1, last + 1, logits.shape(2)}));
    int token = next.item<uint32_t>();
    generated.push_back(token);
    ids.push_back(token);
  }
  return generated;
}

}  // namespace

TEST(Generate, GreedyEqualsTheFullForwardReference) {
  for (std::string name : {"llama", "qwen3", "mistral"}) {
    auto model = ft::models::load_model(kModels / name, mx::float32);
    model->eval();
    std::vector<int> prompt = {5, 17, 3, 99, 42, 8, 1};
    const int steps = 20;  // past mistral's window of 5
    std::vector<int> expected = greedy_without_cache(*model, prompt, steps);
    // A prefill chunk of 3 and a cache step of 4 exercise the chunked prompt and growth.
    GenerateOptions options{.max_tokens = steps, .prefill_chunk = 3, .cache_step = 4};
    auto result = ft::generate::generate(*model, prompt, options, letters);
    EXPECT_EQ(result.ids, expected) << name;
    EXPECT_EQ(result.text, letters(expected));
    EXPECT_EQ(result.finish_reason, "length");
  }
}

TEST(Generate, StopsAtEosAndAtStopStringsAndStreamsTheSameText) {
  auto model = ft::models::load_model(kModels / "llama", mx::float32);
  model->eval();
  std::vector<int> prompt = {5, 17, 3, 99};
  std::vector<int> reference = greedy_without_cache(*model, prompt, 12);

  // eos: the first occurrence of reference[6]'s id ends generation before it.
  int eos = reference[6];
  size_t first = std::find(reference.begin(), reference.end(), eos) - reference.begin();
  auto with_eos =
      ft::generate::generate(*model, prompt, {.max_tokens = 12, .eos_ids = {eos}}, letters);
  EXPECT_EQ(with_eos.finish_reason, "eos");
  EXPECT_EQ(with_eos.ids, std::vector<int>(reference.begin(), reference.begin() + first));

  // A stop string made of reference tokens 5..6: the text is cut where it begins.
  std::string full = letters(reference);
  std::string stop = full.substr(5, 2);
  size_t cut = full.find(stop);
  std::string streamed;
  auto with_stop =
      ft::generate::generate(*model, prompt, {.max_tokens = 12, .stop = {"not there", stop}},
                             letters, [&](const std::string& piece) { streamed += piece; });
  EXPECT_EQ(with_stop.finish_reason, "stop");
  EXPECT_EQ(with_stop.text, full.substr(0, cut));
  EXPECT_EQ(streamed, with_stop.text);  // nothing of the stop string leaked

  // Streaming without stops: the pieces add up to the text.
  streamed.clear();
  auto plain = ft::generate::generate(*model, prompt, {.max_tokens = 12}, letters,
                                      [&](const std::string& piece) { streamed += piece; });
  EXPECT_EQ(streamed, full);
}

TEST(Generate, SameSeedSameSampleAndBadInputsAreErrors) {
  auto model = ft::models::load_model(kModels / "qwen3", mx::float32);
  model->eval();
  GenerateOptions options{.max_tokens = 16, .sampling = {.temperature = 1.0f, .top_k = 50}};
  options.seed = 3;
  auto a = ft::generate::generate(*model, {1, 2, 3}, options, letters);
  auto b = ft::generate::generate(*model, {1, 2, 3}, options, letters);
  options.seed = 4;
  auto c = ft::generate::generate(*model, {1, 2, 3}, options, letters);
  EXPECT_EQ(a.ids, b.ids);
  EXPECT_NE(a.ids, c.ids);
  ft::testing::expect_error([&] { ft::generate::generate(*model, {}, {}, letters); },
                            "prompt is empty");
  ft::testing::expect_error(
      [&] {
        ft::generate::generate(*model, {1, 100000}, {}, letters);
      },
      "outside the vocabulary");
}
