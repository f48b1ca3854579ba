// The options of ft train, ft train start|quick|validate and ft validate: their fields, their
// definitions on a command, and a YAML config's keys merged under the command line (every
// option is also a key: its long name with '-' or '_'; the command line wins).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "apps/ft/sample_options.h"

namespace ft::cli {

// Every field is also in the JSON list after the struct.
struct TrainOptions {
  std::string model;
  std::vector<std::string> data;  // PATH or PATH:WEIGHT each (data::parse_data_source)
  std::string valid_data;         // a record file for validation; empty: from `data`
  std::string config;
  std::string method = "lora";
  int lora_rank = 8;
  float lora_alpha = 16.0f;
  float lora_dropout = 0.0f;
  bool rslora = false;
  std::vector<std::string> target_modules;  // empty: the family's default
  std::string target_regex;
  int num_layers = 0;
  std::string optimizer = "adamw";
  float learning_rate = 1e-4f;
  float weight_decay = 0.01f;
  std::string schedule = "cosine";
  int64_t warmup_steps = 0;
  int64_t iterations = 0;
  int64_t epochs = 1;
  int batch_size = 4;            // 0: auto, the largest the memory budget fits
  double memory_budget_gib = 0;  // 0: the device's (ft::memory_budget)
  double memory_limit_gib = 0;   // 0: MLX's own limit
  int grad_accumulation = 1;
  int max_seq_length = 512;
  SampleCliOptions samples;  // --format, --mask-prompt, --skip-bad-records, --no-template,
                             // --template (saved with the output)
  bool pack = false;
  double valid_fraction = 0.0;
  int64_t eval_every = 0;
  int64_t patience = 0;
  int64_t save_every = 0;
  int keep_checkpoints = 0;  // 0: all
  bool save_best = true;     // with evaluation: the output is the best evaluated step
  std::string output_dir = "ft-output";
  bool overwrite = false;  // start again: drop the output folder's checkpoints and outputs
  uint64_t seed = 0;
  bool grad_checkpoint = false;
  float max_grad_norm = 1.0f;
  int64_t stop_after = 0;
  std::string adapter_format = "peft";
  std::string adapter;
  std::string dtype = "float32";
  std::string optimizer_state = "float32";
  bool no_master_weights = false;
  bool shard_optimizer_state = false;  // under ft launch: each rank keeps its share
  int64_t loss_scale_interval = 2000;
  std::string teacher;
  float router_aux_loss = -1.0f;  // < 0: config.json's (output_router_logits)
  float distill_weight = 0.5f;
  float distill_temperature = 2.0f;
  int quantize_bits = 0;  // QLoRA: quantize the base to this many bits (0: off)
  int quantize_group_size = 64;
  std::string profile;      // a preset of the options above (train_profiles())
  std::string tensorboard;  // a folder for TensorBoard event files; empty: none
  std::string events;       // a file that every trainer event is appended to; empty: none
};

// A run's options as JSON (run.json in the output folder), each field under its own name;
// fields a JSON object lacks keep their defaults.
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(
    TrainOptions, model, data, valid_data, config, method, lora_rank, lora_alpha, lora_dropout,
    rslora, target_modules, target_regex, num_layers, optimizer, learning_rate, weight_decay,
    schedule, warmup_steps, iterations, epochs, batch_size, memory_budget_gib, memory_limit_gib,
    grad_accumulation, max_seq_length, samples, pack, valid_fraction, eval_every, patience,
    save_every, keep_checkpoints, save_best, output_dir, overwrite, seed, grad_checkpoint,
    max_grad_norm, stop_after, adapter_format, adapter, dtype, optimizer_state, no_master_weights,
    shard_optimizer_state, loss_scale_interval, teacher, router_aux_loss, distill_weight,
    distill_temperature, quantize_bits, quantize_group_size, profile, tensorboard, events)

// `--profile NAME`: preset values for the kind of data, each an option's long name and
// value; every value yields to the same option on the command line or in the YAML file.
struct TrainProfile {
  const char* name;
  const char* data;  // the data it suits
  std::vector<std::pair<std::string, std::string>> values;
};
const std::vector<TrainProfile>& train_profiles();

// Defines every option of TrainOptions on cmd (MODEL and DATA positionals included).
void add_train_options(CLI::App* cmd, TrainOptions& o);

// Fills the options of cmd that the command line left unset from a YAML file's keys (each
// an option's long name with '-' or '_', or a positional's name). Throws
// CLI::ValidationError for an unknown key or a bad value, naming the file and key.
void merge_yaml_config(CLI::App* cmd, const std::string& file);

// After parsing: a lone YAML file in the MODEL place taken as --config, the YAML keys the
// command line left unset merged in, then the profile's, then the models resolved
// (resolve_models). Throws
// CLI::ValidationError for an unknown key or a bad value, naming the file and key.
void finish_train_options(CLI::App* cmd, TrainOptions& o);

// The model and the teacher as given (folders, GGUF files) or as Hugging Face ids found in
// the cache (ft/hub/cache.h).
void resolve_models(TrainOptions& o);

}  // namespace ft::cli
