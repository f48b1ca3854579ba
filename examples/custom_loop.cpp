// A training loop written by hand with ft's C++ API, for when `ft train` is not the loop
// you want: load a model folder, put LoRA adapters on it, tokenize a JSONL file, and
// step with value_and_grad over the trainable parameters, gradient clipping, AdamW and a
// warmup + cosine schedule. It exits non-zero unless the loss went down.
//
// Usage: custom_loop MODEL_FOLDER DATA.jsonl [STEPS]
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include <mlx/ops.h>
#include <mlx/transforms.h>

#include "ft/core/error.h"
#include "ft/data/batching.h"
#include "ft/data/dataset.h"
#include "ft/models/registry.h"
#include "ft/nn/lora.h"
#include "ft/train/clip.h"
#include "ft/train/losses.h"
#include "ft/train/optimizer.h"
#include "ft/train/schedule.h"

namespace mx = mlx::core;

int run(const std::string& model_dir, const std::string& data_file, int steps) {
  // The model, with rank-8 adapters on the attention projections; everything else is frozen.
  auto model = ft::models::load_model(model_dir);
  ft::nn::LoraConfig lora;
  lora.rank = 8;
  lora.alpha = 16;
  lora.target_modules = {"q_proj", "k_proj", "v_proj", "o_proj"};
  ft::nn::apply_lora(*model, lora);
  ft::ParamMap trainable = model->trainable_parameters();
  const std::vector<std::string> names = trainable.names();
  std::printf("%zu parameters, %zu trained\n", model->num_parameters(), trainable.numel());

  // Tokenized samples (the loss on the completions only) in shuffled batches of 16 rows.
  ft::data::DataOptions data_options;
  data_options.sample.mask_prompt = true;
  data_options.sample.max_seq_length = 64;
  ft::data::DataLoader loader(model_dir, data_options);
  std::vector<ft::data::Split> splits = loader.load(data_file);
  ft::data::BatchOptions batch_options;
  batch_options.batch_size = 16;
  ft::data::Batcher batcher(splits.front().data, batch_options);

  ft::OptimizerConfig optimizer_config;
  optimizer_config.name = "adamw";
  optimizer_config.learning_rate = 2e-3f;
  optimizer_config.weight_decay = 0.0f;
  optimizer_config.schedule = ft::warmup_cosine(2e-3, steps / 10, steps);
  auto optimizer = ft::make_optimizer(optimizer_config);

  // The loss as a function of the trainable arrays, then the batch's inputs and targets.
  auto loss_fn = [&](const std::vector<mx::array>& args) -> std::vector<mx::array> {
    std::vector<mx::array> params(args.begin(), args.begin() + names.size());
    model->update(ft::ParamMap::zip(names, params));
    const mx::array& inputs = args[names.size()];
    const mx::array& targets = args[names.size() + 1];
    mx::array logits = (*model)(inputs);  // (rows, length, vocab)
    return {ft::train::cross_entropy(logits, targets)};
  };
  std::vector<int> argnums(names.size());
  for (size_t i = 0; i < names.size(); ++i) argnums[i] = static_cast<int>(i);
  auto value_and_grad = mx::value_and_grad(loss_fn, argnums);

  ft::data::Position position;
  float first = 0, last = 0;
  for (int step = 0; step < steps; ++step) {
    ft::data::Batch batch = batcher.batch(position);
    position = batcher.next(position);
    std::vector<mx::array> args = model->trainable_parameters().arrays();
    args.push_back(ft::data::to_mx(batch.inputs, batch));
    args.push_back(ft::data::to_mx(batch.targets, batch));
    auto [loss, grads] = value_and_grad(args);
    model->update(trainable);  // tracing left placeholders in the model

    ft::ClippedGrads clipped = ft::clip_grad_norm(ft::ParamMap::zip(names, grads), 1.0f);
    float rate = optimizer->learning_rate();
    trainable = optimizer->update(trainable, clipped.grads);
    model->update(trainable);
    std::vector<mx::array> pending = trainable.arrays();
    pending.push_back(loss[0]);
    mx::eval(pending);

    float value = loss[0].item<float>();
    if (step == 0) first = value;
    last = value;
    if (step % 10 == 0 || step == steps - 1)
      std::printf("step %3d  loss %.4f  lr %.2e  grad norm %.3f\n", step + 1, value, rate,
                  clipped.norm.item<float>());
  }
  std::printf("loss %.4f -> %.4f\n", first, last);
  return last < first ? 0 : 1;
}

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s MODEL_FOLDER DATA.jsonl [STEPS]\n", argv[0]);
    return 2;
  }
  try {
    return run(argv[1], argv[2], argc > 3 ? std::stoi(argv[3]) : 60);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "custom_loop: %s\n", e.what());
    return 1;
  }
}
