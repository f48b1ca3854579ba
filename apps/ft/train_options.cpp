#include "apps/ft/train_options.h"

#include <algorithm>
#include <filesystem>
#include <iostream>

#include "apps/ft/commands.h"
#include "ft/hub/cache.h"
#include "ft/io/model_folder.h"  // defines: io::is_model_path, io::read_config
#include "ft/io/options_file.h"
#include "ft/models/registry.h"  // defines: models::from_hf_config

namespace ft::cli {

namespace fs = std::filesystem;

namespace {

std::string join(const std::vector<std::string>& names) {
  std::string out;
  for (const std::string& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

}  // namespace

void add_train_options(CLI::App* cmd, TrainOptions& o) {
  cmd->add_option("model", o.model,
                  std::string(kModelHelp) + "; or a YAML config file in place of --config");
  cmd->add_option("data,--data", o.data,
                  "JSONL or JSON array file (plain, .gz or .zst), a folder of those or with "
                  "train / valid / test files of those; several mix, each PATH:WEIGHT for its "
                  "share (docs/data.md)");
  cmd->add_option("--config", o.config, "YAML file whose keys are these options");
  add_method_option(cmd, o.method);
  add_lora_rank_option(cmd, o.lora_rank);
  cmd->add_option("--lora-alpha", o.lora_alpha, "LoRA alpha (scale alpha / rank)")
      ->check(kPositive)
      ->capture_default_str();
  cmd->add_option("--lora-dropout", o.lora_dropout, "Dropout on the adapter input")
      ->check(CLI::Range(0.0, 0.999))
      ->capture_default_str();
  cmd->add_flag("--rslora", o.rslora, "Scale alpha / sqrt(rank)");
  add_target_modules_option(cmd, o.target_modules,
                            "the family's attention projections: q/k/v/o_proj, Phi-3's qkv_proj "
                            "and o_proj, GPT-2's c_attn and c_proj, ...");
  cmd->add_option("--target-regex", o.target_regex,
                  "Adapt layers whose dotted path matches this regex");
  cmd->add_option("--num-layers", o.num_layers, "Adapt only the last N layers (0: all)")
      ->check(kNonNegative)
      ->capture_default_str();
  add_optimizer_option(cmd, o.optimizer);
  cmd->add_option("--learning-rate,--lr", o.learning_rate, "Peak learning rate")
      ->check(kPositive)
      ->capture_default_str();
  cmd->add_option("--weight-decay", o.weight_decay, "Weight decay")
      ->check(kNonNegative)
      ->capture_default_str();
  cmd->add_option("--schedule", o.schedule, "cosine, linear or constant (after the warmup)")
      ->check(CLI::IsMember({"cosine", "linear", "constant"}))
      ->capture_default_str();
  cmd->add_option("--warmup-steps", o.warmup_steps, "Linear warmup steps")
      ->check(kNonNegative)
      ->capture_default_str();
  cmd->add_option("--iterations", o.iterations, "Optimizer steps (0: use --epochs)")
      ->check(kNonNegative)
      ->capture_default_str();
  cmd->add_option("--epochs", o.epochs, "Passes over the data when --iterations is 0")
      ->check(kPositive)
      ->capture_default_str();
  cmd->add_option("--batch-size", o.batch_size,
                  "Rows per micro-batch, or auto: the largest whose memory estimate fits the "
                  "budget (turning on --grad-checkpoint when one row does not fit without it)")
      ->transform(CLI::Validator(
          [](std::string& value) {
            if (value == "auto")
              value = "0";
            else if (value.empty() || value == "0" ||
                     value.find_first_not_of("0123456789") != std::string::npos)
              return std::string("must be a positive integer or auto");
            return std::string();
          },
          "INT|auto"))
      ->capture_default_str();
  cmd->add_option("--memory-budget", o.memory_budget_gib,
                  "GiB a run may use (default: the GPU's free memory, or the system's available "
                  "memory on the CPU); a run whose estimate exceeds 90% of it is refused before "
                  "it starts")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->add_option("--memory-limit", o.memory_limit_gib,
                  "GiB of GPU memory MLX may hold before it waits for queued work: a lower "
                  "peak for some speed (default: MLX's, 80% of the GPU)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->add_option("--grad-accumulation", o.grad_accumulation, "Micro-batches per step")
      ->check(kPositive)
      ->capture_default_str();
  add_max_seq_length_option(cmd, o.max_seq_length, "Cut samples to this many tokens");
  add_sample_options(cmd, o.samples, "Train on completions / assistant turns only");
  cmd->add_flag("--pack", o.pack,
                "Pack several samples per row; a block-diagonal causal mask keeps them apart");
  cmd->add_option("--valid-fraction", o.valid_fraction,
                  "Share of a single JSONL file held out for validation")
      ->check(CLI::Range(0.0, 0.9))
      ->capture_default_str();
  cmd->add_option("--valid-data", o.valid_data,
                  "A record file to validate on, instead of a split of the training data");
  cmd->add_option("--eval-every", o.eval_every, "Steps between validations (0: never)")
      ->check(kNonNegative)
      ->capture_default_str();
  cmd->add_option("--patience", o.patience,
                  "Stop after this many validations without improvement (0: never)")
      ->check(kNonNegative)
      ->capture_default_str();
  cmd->add_option("--save-every", o.save_every, "Steps between checkpoints (0: at the end)")
      ->check(kNonNegative)
      ->capture_default_str();
  cmd->add_option("--tensorboard", o.tensorboard,
                  "Write TensorBoard event files (loss, learning rate, tokens/s, memory, "
                  "validation) to this folder");
  cmd->add_option("--events", o.events,
                  "Append every trainer event (start, step, evaluation, checkpoint, best, end) "
                  "to this file, one JSON object a line");
  cmd->add_flag("--overwrite", o.overwrite,
                "Start again in --output-dir: delete its checkpoints, metrics and outputs "
                "instead of resuming from them");
  cmd->add_option("--keep-checkpoints", o.keep_checkpoints,
                  "Keep only the last N checkpoints (0: all)")
      ->check(kNonNegative)
      ->capture_default_str();
  cmd->add_flag("--save-best,!--no-save-best", o.save_best,
                "With --eval-every: keep the weights of the lowest validation loss, and save "
                "them as the adapter or model at the end (--no-save-best: the last step's)")
      ->capture_default_str();
  cmd->add_option("--output-dir", o.output_dir,
                  "Checkpoints, metrics.jsonl and the adapter; a run there resumes")
      ->capture_default_str();
  add_seed_option(cmd, o.seed, "the data order, dropout and adapter init");
  add_grad_checkpoint_option(cmd, o.grad_checkpoint);
  cmd->add_option("--max-grad-norm", o.max_grad_norm, "Clip the global gradient norm (0: off)")
      ->check(kNonNegative)
      ->capture_default_str();
  cmd->add_option("--stop-after", o.stop_after,
                  "Stop (and save a checkpoint) after this many steps of this run")
      ->check(kNonNegative);
  cmd->add_option("--adapter", o.adapter,
                  "Continue training this adapter (PEFT or mlx-lm layout): its rank, scale, "
                  "DoRA and adapted layers replace the --lora-* and --target-* options")
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--adapter-format", o.adapter_format,
                  "Layout of the saved adapter: peft (adapter_model.safetensors, for "
                  "peft.PeftModel) or mlx-lm (adapters.safetensors, for mlx_lm)")
      ->check(CLI::IsMember({"peft", "mlx-lm"}))
      ->capture_default_str();
  add_dtype_option(cmd, o.dtype,
                   "base weights and activations; trained parameters keep f32 masters and "
                   "optimizer state, float16 adds dynamic loss scaling")
      ->capture_default_str();
  cmd->add_option("--optimizer-state", o.optimizer_state,
                  "dtype of the optimizer's moments: float32, or bfloat16 for half their memory")
      ->check(CLI::IsMember({"float32", "bfloat16"}))
      ->capture_default_str();
  cmd->add_flag("--no-master-weights", o.no_master_weights,
                "With a bfloat16 or float16 --dtype, update the 16-bit weights themselves, with "
                "no float32 copies: 4 bytes less per trained parameter, and updates below a "
                "weight's last bit are lost");
  cmd->add_flag("--shard-optimizer-state", o.shard_optimizer_state,
                "Under ft launch: each rank keeps and updates the optimizer state of its share "
                "of the parameters only (full fine-tuning of models whose state does not fit "
                "one device); the same updates");
  cmd->add_option("--loss-scale-interval", o.loss_scale_interval,
                  "float16: double the loss scale after this many steps without overflow")
      ->check(kPositive)
      ->capture_default_str();
  cmd->add_option("--router-aux-loss", o.router_aux_loss,
                  "Mixture-of-experts models: the weight of the router's load-balancing loss "
                  "(default: config.json's router_aux_loss_coef when output_router_logits is "
                  "set, else none)")
      ->check(CLI::Range(0.0, 100.0));
  cmd->add_option("--teacher", o.teacher,
                  "Distil from this model (folder or Hugging Face id; same tokenizer): its "
                  "logits are the soft targets of a KL term")
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--distill-weight", o.distill_weight,
                  "W: loss = (1-W) CE + W T^2 KL(teacher || student), per trained token")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  cmd->add_option("--distill-temperature", o.distill_temperature,
                  "T: softmax temperature of both models in the KL term")
      ->check(kPositive)
      ->capture_default_str();
  add_quantize_options(cmd, o.quantize_bits, o.quantize_group_size,
                       "before adding adapters; a quantized model folder trains as it is");
  std::string profiles;
  for (const TrainProfile& p : train_profiles())
    profiles += std::string(profiles.empty() ? "" : ", ") + p.name;
  cmd->add_option("--profile", o.profile,
                  "Preset options for the kind of data: " + profiles +
                      " (docs/training.md lists their values; explicit options win)");
}

namespace {

// `ft validate CONFIG.yaml` / `ft train CONFIG.yaml`: a lone YAML file in the MODEL
// place is the config.
void take_positional_config(CLI::App* cmd, TrainOptions& o) {
  fs::path first(o.model);
  bool yaml = first.extension() == ".yaml" || first.extension() == ".yml";
  if (!o.config.empty() || !o.data.empty() || !yaml || !fs::is_regular_file(first)) return;
  o.config = o.model;
  o.model.clear();
  cmd->get_option("model")->clear();
}

}  // namespace

const std::vector<TrainProfile>& train_profiles() {
  // Every profile adapts all linear layers; they differ in what is trained and how long
  // the samples run.
  static const std::vector<TrainProfile> profiles = {
      {"chat",
       "conversations (messages): trains the assistant turns",
       {{"target-modules", "all-linear"},
        {"lora-rank", "16"},
        {"lora-alpha", "32"},
        {"learning-rate", "2e-4"},
        {"mask-prompt", "true"},
        {"max-seq-length", "2048"},
        {"pack", "true"}}},
      {"instruct",
       "prompt/completion and instruction records: trains the answers",
       {{"target-modules", "all-linear"},
        {"lora-rank", "16"},
        {"lora-alpha", "32"},
        {"learning-rate", "2e-4"},
        {"mask-prompt", "true"},
        {"max-seq-length", "1024"},
        {"pack", "true"}}},
      {"completion",
       "plain text: trains every token",
       {{"target-modules", "all-linear"},
        {"lora-rank", "32"},
        {"lora-alpha", "32"},
        {"learning-rate", "1e-4"},
        {"mask-prompt", "false"},
        {"max-seq-length", "2048"},
        {"pack", "true"}}},
      {"code",
       "code: longer samples, a larger rank, trains the answers",
       {{"target-modules", "all-linear"},
        {"lora-rank", "32"},
        {"lora-alpha", "64"},
        {"learning-rate", "1e-4"},
        {"mask-prompt", "true"},
        {"max-seq-length", "4096"},
        {"pack", "true"}}},
  };
  return profiles;
}

namespace {

// Sets each option of the profile the command line and the YAML file left unset; returns
// the options it set.
std::vector<std::string> apply_profile(CLI::App* cmd, const std::string& name) {
  std::vector<std::string> set;
  if (name.empty()) return set;
  const auto& profiles = train_profiles();
  const auto it = std::find_if(profiles.begin(), profiles.end(),
                               [&](const TrainProfile& p) { return p.name == name; });
  if (it == profiles.end()) {
    std::vector<std::string> names;
    for (const TrainProfile& p : profiles) names.push_back(p.name);
    throw CLI::ValidationError("--profile: unknown profile '" + name + "' (known: " + join(names) +
                               ")");
  }
  for (const auto& [key, value] : it->values) {
    CLI::Option* opt = cmd->get_option("--" + key);
    if (opt->count() > 0) continue;
    // Targets chosen by a regex are the user's choice of targets too.
    if (key == "target-modules" && cmd->get_option("--target-regex")->count() > 0) continue;
    opt->add_result(value);
    opt->run_callback();
    set.push_back(key);
  }
  return set;
}

// A profile's sequence length is an upper bound: a model with fewer positions gets its own.
void fit_profile_length(TrainOptions& o) {
  if (o.model.empty() || !io::is_model_path(o.model)) return;
  const int positions = models::from_hf_config(io::read_config(o.model)).max_position_embeddings;
  if (positions <= 0 || positions >= o.max_seq_length) return;
  std::cout << "profile " << o.profile << ": max-seq-length " << o.max_seq_length
            << " is past the model's " << positions << " positions; using " << positions << "\n";
  o.max_seq_length = positions;
}

}  // namespace

// Fills the options the command line left unset from the YAML file (read and checked by
// io::read_options_yaml; here each key finds its option and each value is parsed by it).
void merge_yaml_config(CLI::App* cmd, const std::string& file) {
  if (file.empty()) return;
  for (const io::OptionEntry& entry : io::read_options_yaml(file)) {
    const std::string& key = entry.key;
    std::string dashed = key;
    for (char& ch : dashed) ch = ch == '_' ? '-' : ch;
    CLI::Option* opt = dashed == "config" ? nullptr : cmd->get_option_no_throw("--" + dashed);
    if (!opt && (dashed == "model" || dashed == "data")) opt = cmd->get_option_no_throw(dashed);
    if (!opt) {
      const std::string shown = key.size() > 60 ? key.substr(0, 57) + "..." : key;
      throw CLI::ValidationError(file + ": unknown key '" + shown + "'");
    }
    if (opt->count() > 0) continue;  // the command line wins
    try {
      for (const std::string& value : entry.values) opt->add_result(value);
      opt->run_callback();
    } catch (const CLI::ParseError& e) {
      throw CLI::ValidationError(file + ": key '" + key + "': " + e.what());
    }
  }
}

void finish_train_options(CLI::App* cmd, TrainOptions& o) {
  take_positional_config(cmd, o);
  merge_yaml_config(cmd, o.config);
  const std::vector<std::string> from_profile = apply_profile(cmd, o.profile);
  resolve_models(o);
  if (std::find(from_profile.begin(), from_profile.end(), "max-seq-length") != from_profile.end())
    fit_profile_length(o);
}

void resolve_models(TrainOptions& o) {
  if (!o.model.empty()) o.model = hub::resolve_model(o.model).string();
  if (!o.teacher.empty()) o.teacher = hub::resolve_model(o.teacher).string();
}

}  // namespace ft::cli
