// ft eval: loss, perplexity and token accuracy of a model (with an adapter) over a
// JSONL file.
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include <mlx/ops.h>
#include <mlx/transforms.h>

#include "apps/ft/commands.h"
#include "ft/core/error.h"
#include "ft/data/dataset.h"
#include "ft/hub/cache.h"
#include "ft/io/adapters.h"
#include "ft/models/registry.h"
#include "ft/train/causal_lm_task.h"
#include "ft/train/trainer.h"

namespace ft::cli {
namespace {

namespace fs = std::filesystem;

struct EvalOptions {
  std::string model;
  std::string data;
  std::string adapter;
  int batch_size = 8;
  int max_seq_length = 512;
  bool mask_prompt = false;
  std::string chat_template;  // a named template or a .jinja file
  bool json = false;
  BaseQuantization quantization;
};

void run_eval(EvalOptions o) {
  o.model = hub::resolve_model(o.model).string();
  FT_CHECK(io::is_model_path(o.model), "eval", o.model, ": no such model folder or GGUF file");
  FT_CHECK(fs::is_regular_file(o.data), "eval", o.data, ": no such file");
  data::DataOptions d;
  d.sample.mask_prompt = o.mask_prompt;
  d.sample.max_seq_length = o.max_seq_length;
  d.cache_dir = data::default_cache_dir();
  // --template, else the one the adapter was trained with, else the tokenizer's.
  d.chat_template = o.chat_template;
  if (const auto saved = io::adapter_chat_template(o.adapter); saved && d.chat_template.empty())
    d.chat_template = saved->string();
  data::DataLoader loader(o.model, d);
  data::Split split = loader.load_file(o.data, "eval");
  auto model = models::load_model(o.model);
  quantize_base(*model, o.quantization);
  if (!o.adapter.empty())
    io::apply_adapter(*model, o.adapter, std::nullopt,
                      models::peft_module_prefix(io::read_config(o.model)));
  model->eval();

  data::BatchOptions b;
  b.batch_size = o.batch_size;
  b.max_seq_length = o.max_seq_length;
  b.shuffle = false;
  data::Batcher batcher(split.data, b);
  auto eval_fn = train::causal_lm_eval();
  RowShards shards;
  double loss = 0, tokens = 0, correct = 0;
  for (int64_t i = 0; i < batcher.batches_per_epoch(); ++i) {
    data::Batch batch = batcher.batch({0, i});
    Batch arrays{data::to_mx(batch.inputs, batch), data::to_mx(batch.targets, batch)};
    train::EvalOutput out = train::evaluate_batch(*model, eval_fn, arrays, shards);
    loss += out.loss_sum.item<float>();
    tokens += mx::astype(out.tokens, mx::int64).item<int64_t>();
    correct += mx::astype(out.correct, mx::int64).item<int64_t>();
  }
  FT_CHECK(tokens > 0, "eval", o.data, ": no predicted tokens");
  double mean = loss / tokens;
  double accuracy = correct / tokens;
  if (o.json) {
    nlohmann::json j = {{"loss", mean},
                        {"perplexity", std::exp(mean)},
                        {"accuracy", accuracy},
                        {"tokens", static_cast<int64_t>(tokens)},
                        {"records", split.data.size()}};
    std::cout << j.dump() << "\n";
  } else {
    std::printf(
        "%s: %zu records, %.0f predicted tokens\nloss %.4f  perplexity %.3f  accuracy %.4f\n",
        o.data.c_str(), split.data.size(), tokens, mean, std::exp(mean), accuracy);
  }
}

}  // namespace

void add_eval_command(CLI::App& app) {
  auto o = std::make_shared<EvalOptions>();
  auto* cmd = app.add_subcommand("eval", "Loss, perplexity and token accuracy over a JSONL file");
  cmd->add_option("model", o->model, kModelHelp)->required();
  cmd->add_option("data", o->data, "JSONL file")->required();
  cmd->add_option("--adapter", o->adapter,
                  "Adapter folder (PEFT or mlx-lm layout, as ft train writes)");
  cmd->add_option("--batch-size", o->batch_size, "Rows per batch")
      ->check(kPositive)
      ->capture_default_str();
  cmd->add_option("--max-seq-length", o->max_seq_length, "Cut samples to this many tokens")
      ->check(kPositive)
      ->capture_default_str();
  cmd->add_flag("--mask-prompt", o->mask_prompt, "Score completions / assistant turns only");
  cmd->add_option("--template", o->chat_template,
                  "Chat template: a name (chatml, llama3, ...; see ft train --help) or a .jinja "
                  "file (default: the adapter's, else the tokenizer's)");
  add_base_quantization_options(cmd, o->quantization);
  cmd->add_flag("--json", o->json,
                "Print one JSON object: loss, perplexity, accuracy, tokens, records");
  cmd->callback([o] { run_eval(*o); });
}

}  // namespace ft::cli
