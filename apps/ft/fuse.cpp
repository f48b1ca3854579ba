// ft fuse: merges a LoRA/DoRA adapter into its base model and writes a Hugging Face
// model folder.
#include <iostream>
#include <memory>
#include <string>

#include "apps/ft/commands.h"
#include "ft/core/dtype.h"
#include "ft/core/error.h"
#include "ft/hub/cache.h"
#include "ft/models/fuse.h"

namespace ft::cli {
namespace {

struct FuseArgs {
  std::string model_dir;
  std::string adapter_dir;
  std::string out_dir;
  std::string dtype;
  bool dequantize = false;
};

void run_fuse(const FuseArgs& args) {
  models::FuseOptions options;
  options.dequantize = args.dequantize;
  if (!args.dtype.empty()) options.dtype = parse_float_dtype(args.dtype);
  models::fuse_model_folder(hub::resolve_model(args.model_dir), args.adapter_dir, args.out_dir,
                            options);
  std::cout << "wrote " << args.out_dir << "\n";
}

}  // namespace

void add_fuse_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "fuse",
      "Merge an adapter (PEFT or mlx-lm layout) into its base model and write a Hugging "
      "Face model folder");
  auto args = std::make_shared<FuseArgs>();
  cmd->add_option("model", args->model_dir, kModelHelp)->required();
  cmd->add_option("--adapter", args->adapter_dir,
                  "The adapter's folder: adapter_model.safetensors + adapter_config.json (PEFT) "
                  "or adapters.safetensors + adapter_config.json (mlx-lm)")
      ->required();
  cmd->add_option("--out", args->out_dir,
                  "The folder to write (weights, config.json, tokenizer files); replaced if it "
                  "exists, and only complete once the command succeeds")
      ->required();
  cmd->add_flag("--dequantize", args->dequantize,
                "For a quantized base: write every layer in floating point and drop "
                "config.json's quantization, instead of re-quantizing the merged layers with "
                "their own group size and bits");
  add_dtype_option(cmd, args->dtype,
                   "the merged weights (default: config.json's torch_dtype, else float32)");
  cmd->callback([args] { run_fuse(*args); });
}

}  // namespace ft::cli
