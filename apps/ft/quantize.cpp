// ft quantize: a float model as an MLX quantized folder (the layout mlx-lm writes and
// loads), with per-layer settings from a recipe.
#include <iostream>
#include <memory>
#include <string>

#include "apps/ft/commands.h"
#include "ft/core/dtype.h"
#include "ft/hub/cache.h"
#include "ft/models/convert.h"
#include "ft/models/quantize.h"
#include "ft/train/precision.h"

namespace ft::cli {
namespace {

struct QuantizeArgs {
  std::string model;
  std::string out;
  int bits = 4;
  int group_size = 64;
  std::string recipe;
  std::string dtype;
  bool overwrite = false;
};

void run_quantize(const QuantizeArgs& args, bool bits_given, bool group_size_given) {
  models::QuantizeFolderOptions options;
  options.overwrite = args.overwrite;
  if (!args.dtype.empty()) options.dtype = parse_float_dtype(args.dtype);
  if (!args.recipe.empty()) {
    options.recipe = models::read_quant_recipe(args.recipe);
    // The command line wins over the recipe's defaults.
    options.defaults.bits = options.recipe->bits.value_or(options.defaults.bits);
    options.defaults.group_size = options.recipe->group_size.value_or(options.defaults.group_size);
  }
  if (bits_given || !options.recipe) options.defaults.bits = args.bits;
  if (group_size_given || !options.recipe) options.defaults.group_size = args.group_size;
  auto quantized = models::quantize_model_folder(hub::resolve_model(args.model), args.out, options);
  std::cout << "quantized " << quantized.size() << " layers (default " << options.defaults.bits
            << " bits, groups of " << options.defaults.group_size << "); wrote " << args.out
            << "\n";
}

}  // namespace

void quantize_base(nn::Module& model, const BaseQuantization& quantization) {
  if (quantization.bits == 0) return;
  models::quantize_model(model, {.group_size = quantization.group_size, .bits = quantization.bits});
}

void add_quantize_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "quantize", "Write a model as an MLX quantized folder (the layout mlx-lm writes and loads)");
  auto args = std::make_shared<QuantizeArgs>();
  cmd->add_option("model", args->model,
                  "The model: a folder (config.json and weights) or a GGUF "
                  "file with float matrices")
      ->required();
  cmd->add_option("--out", args->out,
                  "The folder to write (weights, config.json, tokenizer files); only complete "
                  "once the command succeeds")
      ->required();
  auto* bits = cmd->add_option("--bits", args->bits,
                               "Bits per weight: 2, 3, 4, 5, 6 or 8 (MLX affine); wins over "
                               "the recipe's bits")
                   ->capture_default_str();
  auto* group_size = cmd->add_option("--group-size", args->group_size,
                                     "Weights per group sharing a scale and bias: 32, 64 or 128; "
                                     "wins over the recipe's group_size")
                         ->capture_default_str();
  cmd->add_option("--recipe", args->recipe,
                  "YAML or JSON file of per-layer rules (bits and group size by layer range "
                  "and module name, or float); see docs/models.md");
  add_dtype_option(cmd, args->dtype,
                   "the weights' dtype before quantizing, and the scales' (default: "
                   "config.json's torch_dtype)");
  cmd->add_flag("--overwrite", args->overwrite, "Replace an output folder that is not empty");
  cmd->callback([args, bits, group_size] {
    run_quantize(*args, bits->count() > 0, group_size->count() > 0);
  });
}

}  // namespace ft::cli
