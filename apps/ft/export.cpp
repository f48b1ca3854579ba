// ft export: a model, with an adapter merged, as a file for another runtime (GGUF for
// llama.cpp, Ollama and LM Studio).
#include <iostream>
#include <memory>
#include <string>

#include "apps/ft/commands.h"
#include "ft/core/error.h"
#include "ft/hub/cache.h"
#include "ft/models/export_gguf.h"

namespace ft::cli {
namespace {

struct ExportArgs {
  std::string model;
  std::string adapter;
  std::string format = "gguf";
  std::string type = "f16";
  std::string out;
};

void run_export(ExportArgs args) {
  args.model = hub::resolve_model(args.model).string();
  FT_CHECK(args.format == "gguf" || args.format == "gguf-lora", "export",
           "--format must be gguf or gguf-lora, got '", args.format, "'");
  const models::GgufFileType type = models::parse_gguf_file_type(args.type);
  if (args.format == "gguf-lora") {
    FT_CHECK(!args.adapter.empty(), "export",
             "--format gguf-lora writes an adapter: give --adapter DIR");
    models::export_gguf_lora(args.model, args.adapter, args.out, type);
    std::cout << "wrote " << args.out << "\n";
    return;
  }
  models::GgufExportOptions options;
  options.type = type;
  if (!args.adapter.empty()) options.adapter = args.adapter;
  models::export_gguf(args.model, args.out, options);
  std::cout << "wrote " << args.out << "\n";
}

}  // namespace

void add_export_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "export", "Write a model, with an adapter merged, as a GGUF file for llama.cpp");
  auto args = std::make_shared<ExportArgs>();
  cmd->add_option("model", args->model, kModelHelp)->required();
  cmd->add_option("--adapter", args->adapter, "An adapter to merge first (PEFT or mlx-lm layout)");
  cmd->add_option("--format", args->format,
                  "gguf (the model, with the adapter merged) or gguf-lora (the adapter alone, "
                  "for llama.cpp's --lora over the base model's GGUF)")
      ->capture_default_str();
  cmd->add_option("--type", args->type,
                  "The matrices' type: f32, f16, bf16, q8_0, q4_0, q4_1, or q4_k_m (llama.cpp's "
                  "mixture of Q4_K, Q5_K and Q6_K); norms stay f32")
      ->capture_default_str();
  cmd->add_option("--out", args->out, "The file to write (written whole, then renamed)")
      ->required();
  cmd->callback([args] { run_export(*args); });
}

}  // namespace ft::cli
