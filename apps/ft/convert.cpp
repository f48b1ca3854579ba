// ft convert: pytorch_model.bin to safetensors, an MLX quantized folder back to floats, a
// GGUF file to a Hugging Face folder.
#include <iostream>
#include <memory>
#include <string>

#include "apps/ft/commands.h"
#include "ft/core/dtype.h"
#include "ft/hub/cache.h"
#include "ft/models/convert.h"
#include "ft/train/precision.h"

namespace ft::cli {
namespace {

struct ConvertArgs {
  std::string input;
  std::string out;
  std::string dtype;
  bool overwrite = false;
};

void run_convert(const ConvertArgs& args) {
  models::ConvertOptions options;
  options.overwrite = args.overwrite;
  if (!args.dtype.empty()) options.dtype = parse_float_dtype(args.dtype);
  models::Conversion done =
      models::convert_model(hub::resolve_model(args.input), args.out, options);
  std::cout << "converted " << models::conversion_name(done) << "; wrote " << args.out << "\n";
}

}  // namespace

void add_convert_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "convert",
      "Write a Hugging Face folder from pytorch_model.bin (as safetensors), from an MLX "
      "quantized folder (in floats) or from a GGUF file");
  auto args = std::make_shared<ConvertArgs>();
  cmd->add_option("input", args->input,
                  "A folder with pytorch_model.bin, a folder quantized by MLX (mlx-lm, ft "
                  "quantize) or a .gguf file")
      ->required();
  cmd->add_option("--out", args->out,
                  "The folder to write (safetensors, config.json, tokenizer files); only "
                  "complete once the command succeeds")
      ->required();
  add_dtype_option(cmd, args->dtype,
                   "the written weights (default: a quantized folder's scales' dtype, float32 "
                   "for GGUF, a checkpoint's own dtypes)");
  cmd->add_flag("--overwrite", args->overwrite, "Replace an output folder that is not empty");
  cmd->callback([args] { run_convert(*args); });
}

}  // namespace ft::cli
