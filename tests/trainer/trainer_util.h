// What the trainer tests share: a tiny Llama trained on random tokens, built the way a new
// process builds it, with a loss that drops targets by the step's key (so a resumed run
// must restore the Rng too).
#pragma once

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <mlx/ops.h>
#include <mlx/random.h>
#include <mlx/transforms.h>
#include <nlohmann/json.hpp>

#include "ft/models/registry.h"
#include "ft/train/losses.h"
#include "ft/train/optimizer.h"
#include "ft/train/trainer.h"

namespace ft::testing::trainer {

namespace mx = mlx::core;
namespace fs = std::filesystem;
using ft::train::Trainer;
using ft::train::TrainerConfig;

inline ft::models::Config tiny_config() {
  ft::models::Config c;
  c.vocab_size = 64;
  c.hidden_size = 32;
  c.intermediate_size = 64;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  return c;
}

// Random samples of 4..20 tokens; the first `prompt` tokens of some are not trained.
inline ft::data::TokenizedData random_samples(int samples, uint32_t seed) {
  std::mt19937 gen(seed);
  ft::data::TokenizedData data;
  for (int i = 0; i < samples; ++i) {
    ft::data::Sample s;
    int length = std::uniform_int_distribution<int>(4, 20)(gen);
    int prompt = i % 3 == 0 ? length / 2 : 0;
    for (int t = 0; t < length; ++t) {
      s.ids.push_back(std::uniform_int_distribution<int32_t>(0, 63)(gen));
      s.mask.push_back(t >= prompt ? 1 : 0);
    }
    data.add(s, i + 1);
  }
  return data;
}

// Drops a random fifth of the targets with the step's key, so the losses also depend on
// the Rng state a resumed run must restore.
inline ft::LossOutput llama_loss(ft::nn::Module& m, const ft::Batch& batch, const mx::array& key) {
  auto& model = static_cast<ft::models::CausalLM&>(m);
  mx::array logits = model(batch[0]);
  mx::array keep = mx::random::bernoulli(mx::array(0.8f), batch[1].shape(), key);
  mx::array targets = mx::where(keep, batch[1], mx::array(ft::data::kIgnoreIndex));
  mx::array loss =
      ft::train::cross_entropy(logits, targets, {.reduction = ft::train::Reduction::sum});
  return {loss, ft::train::num_valid_tokens(targets)};
}

inline ft::train::EvalOutput llama_eval(ft::nn::Module& m, const ft::Batch& batch) {
  auto& model = static_cast<ft::models::CausalLM&>(m);
  mx::array logits = model(batch[0]);  // (B, L, vocab)
  mx::array loss =
      ft::train::cross_entropy(logits, batch[1], {.reduction = ft::train::Reduction::sum});
  mx::array valid = mx::not_equal(batch[1], mx::array(ft::data::kIgnoreIndex));
  mx::array right = mx::logical_and(valid, mx::equal(mx::argmax(logits, -1), batch[1]));
  return {loss, mx::sum(valid), mx::sum(right)};
}

inline ft::OptimizerConfig adamw() {
  ft::OptimizerConfig c;
  c.name = "adamw";
  c.schedule = ft::warmup_cosine(3e-3, 3, 12, 3e-4);
  return c;
}

inline ft::data::BatchOptions batch_options() {
  ft::data::BatchOptions o;
  o.max_seq_length = 32;
  o.pad_multiple = 4;
  return o;
}

// A model, optimizer and trainer built from scratch, the way a new process would.
struct TrainingRun {
  ft::Rng rng{7};
  std::unique_ptr<ft::models::CausalLM> built = ft::models::build_model(tiny_config(), rng);
  ft::models::CausalLM& model = *built;
  std::unique_ptr<ft::Optimizer> optimizer;
  std::unique_ptr<Trainer> trainer;

  TrainingRun(const ft::data::TokenizedData& train, const ft::data::TokenizedData* valid,
              const TrainerConfig& config, const ft::OptimizerConfig& optimizer_config = adamw(),
              mx::Dtype dtype = mx::float32) {
    model.cast(dtype);
    mx::eval(model.parameters().arrays());
    optimizer = ft::make_optimizer(optimizer_config);
    trainer = std::make_unique<Trainer>(model, llama_loss, llama_eval, *optimizer, train, valid,
                                        batch_options(), config);
  }
};

inline fs::path fresh_dir(const std::string& name) {
  fs::path dir =
      fs::temp_directory_path() / ("ft_trainer_" + std::to_string(::getpid()) + "_" + name);
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

inline std::vector<nlohmann::json> read_jsonl(const fs::path& path) {
  std::vector<nlohmann::json> records;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) records.push_back(nlohmann::json::parse(line));
  return records;
}

inline void expect_same_params(const ft::ParamMap& a, const ft::ParamMap& b) {
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [name, value] : a)
    EXPECT_TRUE(mx::array_equal(value, b.at(name)).item<bool>()) << name;
}

}  // namespace ft::testing::trainer
