// The options several subcommands share, each defined once (declared in commands.h).
#include <string>
#include <vector>

#include "apps/ft/commands.h"
#include "ft/train/optimizer.h"  // defines: optimizer_names

namespace ft::cli {

CLI::Option* add_method_option(CLI::App* cmd, std::string& method) {
  return cmd->add_option("--method", method, "lora, dora or full")
      ->check(CLI::IsMember({"lora", "dora", "full"}))
      ->capture_default_str();
}

CLI::Option* add_lora_rank_option(CLI::App* cmd, int& rank) {
  return cmd->add_option("--lora-rank", rank, "LoRA rank")->check(kPositive)->capture_default_str();
}

CLI::Option* add_optimizer_option(CLI::App* cmd, std::string& optimizer) {
  return cmd->add_option("--optimizer", optimizer, "sgd, adam, adamw, adafactor or lion")
      ->check(CLI::IsMember(optimizer_names()))
      ->capture_default_str();
}

void add_quantize_options(CLI::App* cmd, int& bits, int& group_size, const std::string& what,
                          const std::string& group) {
  CLI::Option* b =
      cmd->add_option(
             "--quantize-bits", bits,
             "QLoRA: quantize the base model's Linear layers and embedding to this many bits "
             "(2, 3, 4, 5, 6 or 8; MLX affine; 0: off) " +
                 what)
          ->check(CLI::IsMember({0, 2, 3, 4, 5, 6, 8}))
          ->capture_default_str();
  CLI::Option* g =
      cmd->add_option("--quantize-group-size", group_size,
                      "Weights per quantization group with --quantize-bits (32, 64 or 128); layers "
                      "whose input size it does not divide stay in floats")
          ->check(CLI::IsMember({32, 64, 128}))
          ->capture_default_str();
  if (!group.empty()) {
    b->group(group);
    g->group(group);
  }
}

void add_base_quantization_options(CLI::App* cmd, BaseQuantization& quantization) {
  add_quantize_options(cmd, quantization.bits, quantization.group_size,
                       "before applying --adapter, so that a QLoRA adapter runs on the base it "
                       "was trained on");
}

CLI::Option* add_target_modules_option(CLI::App* cmd, std::vector<std::string>& modules,
                                       const std::string& default_text) {
  return cmd->add_option("--target-modules", modules,
                         "Adapted layers by last name component (q_proj v_proj ..., or "
                         "all-linear; default: " +
                             default_text + ")");
}

CLI::Option* add_grad_checkpoint_option(CLI::App* cmd, bool& on) {
  return cmd->add_flag("--grad-checkpoint", on,
                       "Recompute each layer's activations in the backward pass");
}

CLI::Option* add_seed_option(CLI::App* cmd, uint64_t& seed, const std::string& what) {
  return cmd->add_option("--seed", seed, "Seed of " + what)->capture_default_str();
}

CLI::Option* add_max_seq_length_option(CLI::App* cmd, int& length, const std::string& what) {
  return cmd->add_option("--max-seq-length", length, what)->check(kPositive)->capture_default_str();
}

}  // namespace ft::cli
