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
#include "apps/ft/sample_options.h"
#include "apps/ft/train_options.h"  // defines: merge_yaml_config
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
  std::string config;
  int batch_size = 8;
  int max_seq_length = 512;
  SampleCliOptions samples;
  bool json = false;
  BaseQuantization quantization;
};

void run_eval(EvalOptions o) {
  FT_CHECK(!o.model.empty(), "eval", "no model (give MODEL or the 'model' key)");
  FT_CHECK(!o.data.empty(), "eval", "no data (give DATA or the 'data' key)");
  o.model = hub::resolve_model(o.model).string();
  FT_CHECK(io::is_model_path(o.model), "eval", o.model, ": no such model folder or GGUF file");
  FT_CHECK(fs::is_regular_file(o.data), "eval", o.data, ": no such file");
  data::DataOptions d = sample_data_options(o.samples, o.max_seq_length, o.adapter);
  d.cache_dir = data::default_cache_dir();
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
  cmd->add_option("model", o->model, kModelHelp);
  cmd->add_option("data", o->data, "JSONL file");
  cmd->add_option("--adapter", o->adapter,
                  "Adapter folder (PEFT or mlx-lm layout, as ft train writes)");
  cmd->add_option("--batch-size", o->batch_size, "Rows per batch")
      ->check(kPositive)
      ->capture_default_str();
  add_max_seq_length_option(cmd, o->max_seq_length, "Cut samples to this many tokens");
  add_sample_options(cmd, o->samples, "Score completions / assistant turns only");
  add_base_quantization_options(cmd, o->quantization);
  cmd->add_flag("--json", o->json,
                "Print one JSON object: loss, perplexity, accuracy, tokens, records");
  cmd->add_option("--config", o->config,
                  "YAML file whose keys are these options (the command line wins)");
  cmd->callback([o, cmd] {
    merge_yaml_config(cmd, o->config);
    run_eval(*o);
  });
}

}  // namespace ft::cli
