// `ft generate` as a script sees it, against the library on the same model folder: a
// tiny random Llama with a byte-level tokenizer of 256 tokens written by the test.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include <mlx/ops.h>
#include <mlx/random.h>
#include <nlohmann/json.hpp>

#include "ft/core/random.h"
#include "ft/generate/generate.h"
#include "ft/io/model_folder.h"
#include "ft/models/registry.h"
#include "ft/nn/lora.h"
#include "ft/tokenizer/tokenizer.h"
#include "ft/tokenizer/unicode.h"

namespace mx = mlx::core;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

struct Result {
  int status = -1;
  std::string out;  // stdout
  std::string err;  // stderr
};

Result run_ft(const std::string& args) {
  std::string err_path =
      ::testing::TempDir() + "/ft_generate_stderr-" + std::to_string(::getpid()) + ".txt";
  std::string command = std::string(FT_BINARY) + " " + args + " 2>" + err_path;
  Result r;
  FILE* pipe = popen(command.c_str(), "r");
  if (!pipe) return r;
  char buffer[4096];
  size_t n;
  while ((n = fread(buffer, 1, sizeof buffer, pipe)) > 0) r.out.append(buffer, n);
  int status = pclose(pipe);
  r.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  std::ifstream err(err_path);
  r.err.assign(std::istreambuf_iterator<char>(err), {});
  return r;
}

// The byte-level BPE alphabet's symbol for a byte.
std::string byte_char(int b) {
  std::string utf8;
  ft::tokenizer::utf8_append(utf8, ft::tokenizer::byte_to_char(static_cast<uint8_t>(b)));
  return utf8;
}

const char* kTemplate =
    "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}"
    "{% if add_generation_prompt %}<assistant>{% endif %}";

// A model folder with a 256-byte tokenizer and a chat template; made once.
const fs::path& model_dir() {
  static const fs::path dir = [] {
    fs::path root =
        (fs::path(::testing::TempDir()) / ("ft_generate_cli-" + std::to_string(::getpid())));
    fs::remove_all(root);
    fs::path tokenizer = root / "tokenizer";
    fs::create_directories(tokenizer);
    json vocab = json::object();
    for (int b = 0; b < 256; ++b) vocab[byte_char(b)] = b;
    json byte_level = {{"type", "ByteLevel"},
                       {"add_prefix_space", false},
                       {"trim_offsets", true},
                       {"use_regex", true}};
    json tok = {{"version", "1.0"},
                {"truncation", nullptr},
                {"padding", nullptr},
                {"added_tokens", json::array()},
                {"normalizer", nullptr},
                {"pre_tokenizer", byte_level},
                {"post_processor", nullptr},
                {"decoder", byte_level},
                {"model",
                 {{"type", "BPE"},
                  {"dropout", nullptr},
                  {"unk_token", nullptr},
                  {"continuing_subword_prefix", nullptr},
                  {"end_of_word_suffix", nullptr},
                  {"fuse_unk", false},
                  {"byte_fallback", false},
                  {"vocab", vocab},
                  {"merges", json::array()}}}};
    std::ofstream(tokenizer / "tokenizer.json") << tok.dump();
    std::ofstream(tokenizer / "tokenizer_config.json") << json{{"chat_template", kTemplate}}.dump();

    std::ifstream golden(fs::path(FT_TEST_DATA) / "models" / "llama" / "config.json");
    json config = json::parse(golden);
    config["vocab_size"] = 256;
    auto llama = ft::models::from_hf_config(ft::io::ModelConfig(config, root / "config.json"));
    ft::Rng rng(11);
    auto built = ft::models::build_model(llama, rng);
    auto& model = *built;
    ft::io::SaveOptions save;
    save.copy_tokenizer_from = tokenizer;
    ft::io::save_model_folder(model.parameters(), config, root / "model", save);
    return root / "model";
  }();
  return dir;
}

struct Library {
  std::unique_ptr<ft::models::CausalLM> model;
  ft::tokenizer::Tokenizer tokenizer;
};

Library library() {
  auto model = ft::models::load_model(model_dir());
  model->eval();
  return {std::move(model), ft::tokenizer::Tokenizer::from_dir(model_dir())};
}

ft::generate::GenerateResult reference(Library& lib, const std::vector<int>& prompt,
                                       ft::generate::GenerateOptions options) {
  options.eos_ids = lib.tokenizer.eos_token_ids();
  return ft::generate::generate(*lib.model, prompt, options,
                                ft::generate::decode_with(lib.tokenizer));
}

json run_json(const std::string& args) {
  auto r = run_ft("generate " + model_dir().string() + " " + args + " --json");
  EXPECT_EQ(r.status, 0) << r.err;
  return r.status == 0 ? json::parse(r.out) : json::object();
}

}  // namespace

TEST(GenerateCli, RawPromptMatchesTheLibraryAndStreamsTheSameText) {
  Library lib = library();
  auto expected = reference(lib, lib.tokenizer.encode("hello", true), {.max_tokens = 12});
  ASSERT_EQ(expected.ids.size(), 12u);
  json out = run_json("--prompt hello --raw --max-tokens 12");
  EXPECT_EQ(out["ids"].get<std::vector<int>>(), expected.ids);
  EXPECT_EQ(out["text"].get<std::string>(), expected.text);

  // Streaming prints the same text, then a newline.
  auto streamed =
      run_ft("generate " + model_dir().string() + " --prompt hello --raw --max-tokens 12");
  ASSERT_EQ(streamed.status, 0) << streamed.err;
  EXPECT_EQ(streamed.out, expected.text + "\n");
}

TEST(GenerateCli, ChatTemplateIsAppliedToThePromptAndTheMessages) {
  Library lib = library();
  // kTemplate renders by hand to these.
  auto expected =
      reference(lib, lib.tokenizer.encode("<user>hi<assistant>", false), {.max_tokens = 8});
  EXPECT_EQ(run_json("--prompt hi --max-tokens 8")["ids"].get<std::vector<int>>(), expected.ids);

  fs::path messages = (fs::path(::testing::TempDir()) /
                       ("ft_generate_messages.json-" + std::to_string(::getpid())));
  std::ofstream(messages) << R"([{"role": "system", "content": "be brief"},
                                 {"role": "user", "content": "hi"}])";
  auto chat = reference(lib, lib.tokenizer.encode("<system>be brief<user>hi<assistant>", false),
                        {.max_tokens = 8});
  EXPECT_EQ(run_json("--messages " + messages.string() + " --max-tokens 8")["ids"]
                .get<std::vector<int>>(),
            chat.ids);
  EXPECT_NE(chat.ids, expected.ids);
}

TEST(GenerateCli, SamplingOptionsSeedAndStopStrings) {
  Library lib = library();
  std::vector<int> prompt = lib.tokenizer.encode("abc", true);
  ft::generate::GenerateOptions options{.max_tokens = 16,
                                        .sampling = {.temperature = 0.8f,
                                                     .top_k = 40,
                                                     .top_p = 0.9f,
                                                     .min_p = 0.01f,
                                                     .repetition_penalty = 1.3f},
                                        .seed = 5};
  auto expected = reference(lib, prompt, options);
  std::string flags =
      "--prompt abc --raw --max-tokens 16 --temperature 0.8 --top-k 40 --top-p 0.9 "
      "--min-p 0.01 --repetition-penalty 1.3 --seed 5";
  EXPECT_EQ(run_json(flags)["ids"].get<std::vector<int>>(), expected.ids);
  options.seed = 6;
  EXPECT_NE(reference(lib, prompt, options).ids, expected.ids);

  // A stop string taken from the greedy text past its first character cuts it where it
  // first occurs; a printable ASCII one passes through the shell quoted.
  auto greedy = reference(lib, prompt, {.max_tokens = 16});
  std::string stop;
  for (size_t i = 1; i < greedy.text.size() && stop.empty(); ++i) {
    unsigned char c = greedy.text[i];
    if (std::isgraph(c) && c != '\'' && c != '\\') stop = greedy.text.substr(i, 1);
  }
  ASSERT_FALSE(stop.empty()) << greedy.text;
  ASSERT_GT(greedy.text.find(stop), 0u);
  // --stop repeats, and an option after it is not taken for a second value.
  json out = run_json("--stop '" + stop + "' --stop zzzz --prompt abc --raw --max-tokens 16");
  EXPECT_EQ(out["text"].get<std::string>(), greedy.text.substr(0, greedy.text.find(stop)));
  EXPECT_EQ(out["finish_reason"], "stop");
}

TEST(GenerateCli, MlxLmAdapterChangesTheOutputAsTheLibrarySays) {
  // An mlx-lm adapter on q_proj and v_proj of both layers: lora_a (in, r), lora_b (r,
  // out), y = base + scale * (x a) b.
  const int rank = 4;
  const float scale = 2.0f;
  fs::path adapter =
      (fs::path(::testing::TempDir()) / ("ft_generate_adapter-" + std::to_string(::getpid())));
  fs::create_directories(adapter);
  ft::ParamMap mlx_weights;
  ft::Rng rng(3);
  Library lib = library();
  ft::ParamMap base = lib.model->parameters();
  for (int layer = 0; layer < 2; ++layer)
    for (std::string proj : {"q_proj", "v_proj"}) {
      std::string path = "model.layers." + std::to_string(layer) + ".self_attn." + proj;
      const mx::array& w = base.at(path + ".weight");  // (out, in)
      mlx_weights.set(path + ".lora_a", mx::random::normal({w.shape(1), rank}, rng.next()));
      mlx_weights.set(path + ".lora_b", mx::random::normal({rank, w.shape(0)}, rng.next()));
    }
  mlx_weights.save_safetensors((adapter / "adapters.safetensors").string());
  std::ofstream(adapter / "adapter_config.json") << json{
      {"fine_tune_type", "lora"},
      {"num_layers", 2},
      {"lora_parameters",
       {{"rank", rank},
        {"scale", scale},
        {"dropout", 0.0},
        {"keys",
         {"self_attn.q_proj", "self_attn.v_proj"}}}}}.dump();

  // The library with the same adapter put in by target names, PEFT's shapes.
  std::vector<int> prompt = lib.tokenizer.encode("hello", true);
  auto without = reference(lib, prompt, {.max_tokens = 12});
  ft::nn::LoraConfig lora;
  lora.rank = rank;
  lora.alpha = scale * rank;
  lora.target_modules = {"q_proj", "v_proj"};
  ft::nn::apply_lora(*lib.model, lora);
  ft::ParamMap adapter_weights;
  for (const auto& [name, value] : mlx_weights) {
    std::string stem = name.substr(0, name.size() - 7);
    adapter_weights.set(stem + (name.ends_with("lora_a") ? ".lora_A" : ".lora_B"),
                        mx::transpose(value));
  }
  lib.model->load(adapter_weights, false);
  auto with = reference(lib, prompt, {.max_tokens = 12});
  EXPECT_NE(with.ids, without.ids);

  json out = run_json("--prompt hello --raw --max-tokens 12 --adapter " + adapter.string());
  EXPECT_EQ(out["ids"].get<std::vector<int>>(), with.ids);

  // The same adapter in PEFT's layout: lora_alpha / r = 8 / 4 = the scale above.
  fs::path peft =
      (fs::path(::testing::TempDir()) / ("ft_generate_peft-" + std::to_string(::getpid())));
  fs::create_directories(peft);
  ft::ParamMap peft_weights;
  for (const auto& [name, value] : adapter_weights)
    peft_weights.set("base_model.model." + name + ".weight", value);
  peft_weights.save_safetensors((peft / "adapter_model.safetensors").string());
  std::ofstream(peft / "adapter_config.json") << json{
      {"peft_type", "LORA"},
      {"r", rank},
      {"lora_alpha", scale * rank},
      {"target_modules", {"q_proj", "v_proj"}}}.dump();
  json from_peft = run_json("--prompt hello --raw --max-tokens 12 --adapter " + peft.string());
  EXPECT_EQ(from_peft["ids"].get<std::vector<int>>(), with.ids);

  // An adapter for a model with more layers.
  ft::ParamMap other;
  other.set("model.layers.7.self_attn.q_proj.lora_a", mx::zeros({32, rank}));
  other.set("model.layers.7.self_attn.q_proj.lora_b", mx::zeros({rank, 32}));
  other.save_safetensors((adapter / "adapters.safetensors").string());
  auto wrong =
      run_ft("generate " + model_dir().string() + " --prompt hi --adapter " + adapter.string());
  EXPECT_EQ(wrong.status, 1);
  EXPECT_NE(wrong.err.find("another model"), std::string::npos) << wrong.err;
}

TEST(GenerateCli, BadInputIsOneErrorLine) {
  auto neither = run_ft("generate " + model_dir().string() + " --max-tokens 2");
  EXPECT_EQ(neither.status, 1);
  EXPECT_NE(neither.err.find("exactly one of --prompt and --messages"), std::string::npos)
      << neither.err;
  auto missing = run_ft("generate /nonexistent/model --prompt hi");
  EXPECT_EQ(missing.status, 1);
  EXPECT_NE(missing.err.find("/nonexistent/model"), std::string::npos) << missing.err;
  EXPECT_EQ(std::count(missing.err.begin(), missing.err.end(), '\n'), 1) << missing.err;
  auto bad_adapter =
      run_ft("generate " + model_dir().string() + " --prompt hi --adapter /nonexistent/adapter");
  EXPECT_EQ(bad_adapter.status, 1);
  EXPECT_NE(bad_adapter.err.find("/nonexistent/adapter"), std::string::npos) << bad_adapter.err;
  auto bad_top_p = run_ft("generate " + model_dir().string() + " --prompt hi --top-p 0");
  EXPECT_EQ(bad_top_p.status, 1);
  EXPECT_NE(bad_top_p.err.find("top_p"), std::string::npos) << bad_top_p.err;
}
