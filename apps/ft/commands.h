// Each subcommand registers itself on the app and runs when chosen.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "ft/nn/module.h"

namespace ft::cli {

// Number checks whose messages read well (CLI11's own name the largest double).
inline const CLI::Validator kPositive(
    [](std::string& value) -> std::string {
      double v = 0;
      return CLI::detail::lexical_cast(value, v) && v > 0 ? "" : "must be positive, got " + value;
    },
    "POSITIVE");
inline const CLI::Validator kNonNegative(
    [](std::string& value) -> std::string {
      double v = 0;
      return CLI::detail::lexical_cast(value, v) && v >= 0 ? "" : "must be 0 or more, got " + value;
    },
    "NONNEGATIVE");

// --dtype: float32, bfloat16 or float16 (ft/core/dtype.h parses it), checked as it is
// parsed; `what` says what it sets.
inline CLI::Option* add_dtype_option(CLI::App* cmd, std::string& dtype, const std::string& what) {
  return cmd->add_option("--dtype", dtype, "float32, bfloat16 or float16: " + what)
      ->check(CLI::IsMember({"float32", "bfloat16", "float16"}));
}

// The options several commands share, defined once each (shared_options.cpp): the method,
// the LoRA rank, the optimizer, QLoRA's base quantization and the rest below (checked as
// the command line is read). Each returns the option, for a group or a default shown in
// --help.
CLI::Option* add_method_option(CLI::App* cmd, std::string& method);
CLI::Option* add_lora_rank_option(CLI::App* cmd, int& rank);
CLI::Option* add_optimizer_option(CLI::App* cmd, std::string& optimizer);
// --quantize-bits (2, 3, 4, 5, 6 or 8; 0: off) and --quantize-group-size (32, 64 or 128);
// `what` says what the quantized base is for there.
void add_quantize_options(CLI::App* cmd, int& bits, int& group_size, const std::string& what,
                          const std::string& group = "");
// --target-modules (`default_text`: what an empty list adapts there), --grad-checkpoint,
// --seed (`what`: what it seeds) and --max-seq-length (`what`: its help).
CLI::Option* add_target_modules_option(CLI::App* cmd, std::vector<std::string>& modules,
                                       const std::string& default_text);
CLI::Option* add_grad_checkpoint_option(CLI::App* cmd, bool& on);
CLI::Option* add_seed_option(CLI::App* cmd, uint64_t& seed, const std::string& what);
CLI::Option* add_max_seq_length_option(CLI::App* cmd, int& length, const std::string& what);

// What a MODEL argument may be (ft/hub/cache.h resolves it).
inline constexpr const char* kModelHelp =
    "Model folder or GGUF file, or a Hugging Face id ORG/NAME[@REVISION] in the Hugging Face "
    "cache";

void add_info_command(CLI::App& app);
void add_demo_command(CLI::App& app);
void add_tokenize_command(CLI::App& app);
void add_template_command(CLI::App& app);
void add_data_command(CLI::App& app);
void add_fuse_command(CLI::App& app);
void add_export_command(CLI::App& app);
void add_quantize_command(CLI::App& app);
void add_convert_command(CLI::App& app);
void add_generate_command(CLI::App& app);
void add_init_command(CLI::App& app);
void add_train_command(CLI::App& app);
void add_validate_command(CLI::App& app);
void add_eval_command(CLI::App& app);
void add_bench_command(CLI::App& app);
void add_download_command(CLI::App& app);
void add_plot_command(CLI::App& app);
void add_serve_command(CLI::App& app);
void add_launch_command(CLI::App& app);

// --quantize-bits and --quantize-group-size of ft generate and ft eval: the base model
// quantized as ft train --quantize-bits quantizes it (models::quantize_model), before the
// adapter is applied, so that a QLoRA adapter runs on the base it was trained on.
struct BaseQuantization {
  int bits = 0;  // 0: off
  int group_size = 64;
};
void add_base_quantization_options(CLI::App* cmd, BaseQuantization& quantization);
// Quantizes model when quantization.bits is set; throws ft::Error for bits or a group size
// MLX does not pack and for a model that is quantized already.
void quantize_base(nn::Module& model, const BaseQuantization& quantization);

// Writes a byte-level BPE tokenizer (the 256 byte tokens, no merges, and the ChatML
// special tokens <|endoftext|>, <|im_start|>, <|im_end|>) with a ChatML chat template:
// tokenizer.json and tokenizer_config.json in dir.
void write_byte_tokenizer(const std::filesystem::path& dir);

}  // namespace ft::cli
