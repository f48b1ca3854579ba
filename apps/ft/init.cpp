// ft init: writes a small random model folder in the Hugging Face layout (config.json
// as transformers writes it for the chosen model_type, model.safetensors) with a
// tokenizer, so demos and tests need no downloaded files.
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include <mlx/transforms.h>

#include "apps/ft/commands.h"
#include "ft/core/error.h"
#include "ft/core/random.h"
#include "ft/io/model_folder.h"
#include "ft/models/registry.h"
#include "ft/tokenizer/tokenizer.h"
#include "ft/tokenizer/unicode.h"

namespace ft::cli {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

struct InitOptions {
  std::string arch = "llama";
  std::string size = "tiny";
  std::string out;
  std::string tokenizer;
  uint64_t seed = 0;
};

// The byte-level BPE alphabet's symbol for a byte (GPT-2's map, as the tokenizer reads it).
std::string byte_symbol(int byte) {
  std::string utf8;
  tokenizer::utf8_append(utf8, tokenizer::byte_to_char(static_cast<uint8_t>(byte)));
  return utf8;
}

const char* kChatTemplate =
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt "
    "%}{{ '<|im_start|>assistant\\n' }}{% endif %}";

// Special tokens after the 256 byte tokens.
const char* kSpecials[] = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};

}  // namespace

void write_byte_tokenizer(const fs::path& dir) {
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) vocab[byte_symbol(b)] = b;
  json added = json::array();
  for (int i = 0; i < 3; ++i) {
    added.push_back({{"id", 256 + i},
                     {"content", kSpecials[i]},
                     {"single_word", false},
                     {"lstrip", false},
                     {"rstrip", false},
                     {"normalized", false},
                     {"special", true}});
  }
  json tokenizer = {{"version", "1.0"},
                    {"truncation", nullptr},
                    {"padding", nullptr},
                    {"added_tokens", added},
                    {"normalizer", nullptr},
                    {"pre_tokenizer",
                     {{"type", "ByteLevel"},
                      {"add_prefix_space", false},
                      {"trim_offsets", true},
                      {"use_regex", true}}},
                    {"post_processor", nullptr},
                    {"decoder",
                     {{"type", "ByteLevel"},
                      {"add_prefix_space", false},
                      {"trim_offsets", true},
                      {"use_regex", true}}},
                    {"model",
                     {{"type", "BPE"},
                      {"dropout", nullptr},
                      {"unk_token", nullptr},
                      {"continuing_subword_prefix", nullptr},
                      {"end_of_word_suffix", nullptr},
                      {"fuse_unk", false},
                      {"byte_fallback", false},
                      {"ignore_merges", false},
                      {"vocab", vocab},
                      {"merges", json::array()}}}};
  json added_decoder = json::object();
  for (int i = 0; i < 3; ++i) {
    added_decoder[std::to_string(256 + i)] = {{"content", kSpecials[i]}, {"lstrip", false},
                                              {"normalized", false},     {"rstrip", false},
                                              {"single_word", false},    {"special", true}};
  }
  json config = {{"add_bos_token", false},
                 {"add_prefix_space", false},
                 {"added_tokens_decoder", added_decoder},
                 {"bos_token", "<|endoftext|>"},
                 {"eos_token", "<|im_end|>"},
                 {"pad_token", "<|endoftext|>"},
                 {"unk_token", nullptr},
                 {"model_max_length", 2048},
                 {"clean_up_tokenization_spaces", false},
                 {"tokenizer_class", "PreTrainedTokenizerFast"},
                 {"chat_template", kChatTemplate}};
  fs::create_directories(dir);
  std::ofstream(dir / "tokenizer.json") << tokenizer.dump(2) << "\n";
  std::ofstream(dir / "tokenizer_config.json") << config.dump(2) << "\n";
  FT_CHECK(fs::exists(dir / "tokenizer_config.json"), "init", (dir / "tokenizer.json").string(),
           ": cannot write");
}

namespace {

void run_init(const InitOptions& o) {
  fs::path out(o.out);
  // A folder that holds anything may be someone's model: never replaced.
  std::error_code exists_ec;
  FT_CHECK(!fs::exists(out, exists_ec) || (fs::is_directory(out) && fs::is_empty(out)), "init",
           out.string(), " already exists; remove it or choose another --out");
  fs::path tok_dir = o.tokenizer.empty() ? fs::path() : fs::path(o.tokenizer);
  if (!tok_dir.empty()) {
    FT_CHECK(fs::is_directory(tok_dir), "init", tok_dir.string(), ": no such tokenizer folder");
  }
  fs::path parent = out.parent_path().empty() ? fs::path(".") : out.parent_path();
  std::error_code ec;
  fs::create_directories(parent, ec);
  FT_CHECK(!ec && fs::is_directory(parent), "init", out.string(), ": cannot create ",
           parent.string());
  // The tokenizer is written (or read) first: its vocabulary sizes the embedding.
  fs::path staging =
      fs::temp_directory_path() / ("ft-init-tokenizer-" + std::to_string(getpid()));
  fs::remove_all(staging);
  if (tok_dir.empty()) {
    write_byte_tokenizer(staging);
    tok_dir = staging;
  }
  auto tok = tokenizer::Tokenizer::from_dir(tok_dir);

  models::InitSizes sizes;
  sizes.vocab_size = tok.vocab_size();
  if (o.size == "small") {
    sizes.hidden_size = 256;
    sizes.intermediate_size = 688;
    sizes.num_hidden_layers = 4;
    sizes.num_attention_heads = 8;
    sizes.num_key_value_heads = 4;
  }
  sizes.bos_token_id = tok.bos_token() ? tok.bos_token()->id : -1;
  sizes.eos_token_id = tok.eos_token() ? tok.eos_token()->id : -1;
  const models::Family& family = models::family_of(o.arch, "init");
  nlohmann::json config_json = family.init_config(o.arch, sizes);
  models::Config c = models::from_hf_config(io::ModelConfig(config_json, out / "config.json"));
  Rng rng(o.seed);
  std::unique_ptr<models::CausalLM> model = models::build_model(c, rng);
  ParamMap weights = model->parameters();
  mx::eval(weights.arrays());

  io::SaveOptions save;
  save.copy_tokenizer_from = tok_dir;
  io::save_model_folder(weights, config_json, out, save);
  fs::remove_all(staging);
  std::cout << "wrote " << out.string() << ": " << o.arch << " (" << o.size << "), "
            << c.num_hidden_layers << " layers, hidden " << c.hidden_size << ", vocab "
            << c.vocab_size << ", " << model->num_parameters() << " parameters\n";
}

}  // namespace

void add_init_command(CLI::App& app) {
  auto o = std::make_shared<InitOptions>();
  auto* cmd = app.add_subcommand("init", "Write a small random model folder with a tokenizer");
  cmd->add_option("--arch", o->arch, "Architecture (config.json model_type)")
      ->check(CLI::IsMember(models::known_model_types()))
      ->capture_default_str();
  cmd->add_option("--size", o->size,
                  "tiny: 2 layers, hidden 64; small: 4 layers, hidden 256, 8 heads")
      ->check(CLI::IsMember({"tiny", "small"}))
      ->capture_default_str();
  cmd->add_option("--out", o->out, "Model folder to write (a new or empty folder)")->required();
  cmd->add_option("--tokenizer", o->tokenizer,
                  "Copy this tokenizer folder (default: write a byte-level BPE tokenizer "
                  "with ChatML special tokens and chat template)");
  add_seed_option(cmd, o->seed, "the weights");
  cmd->callback([o] { run_init(*o); });
}

}  // namespace ft::cli
