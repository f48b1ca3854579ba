// ft download: a model from the Hugging Face Hub into the Hugging Face cache, where every
// command then opens it by its id (ft/hub/download.h).
#include <iostream>
#include <memory>
#include <optional>
#include <string>

#include "apps/ft/commands.h"
#include "ft/core/error.h"
#include "ft/hub/download.h"

namespace ft::cli {
namespace {

struct DownloadArgs {
  std::string model;
  hub::DownloadOptions options;
};

void run_download(const DownloadArgs& args) {
  const std::optional<hub::RepoId> id = hub::parse_repo_id(args.model);
  FT_CHECK(id.has_value(), "download", "'", args.model,
           "' is no Hugging Face id ORG/NAME[@REVISION]");
  std::cout << hub::download_model(*id, args.options).string() << "\n";
}

}  // namespace

void add_download_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "download",
      "Download a model from the Hugging Face Hub into the Hugging Face cache (resuming an "
      "interrupted download) and print its snapshot folder");
  auto args = std::make_shared<DownloadArgs>();
  cmd->add_option("model", args->model, "Hugging Face id ORG/NAME[@REVISION] (default: main)")
      ->required();
  cmd->add_option("--include", args->options.include,
                  "Download the files matching this glob pattern ('*', '?'; repeatable) "
                  "instead of the configs, tokenizer files and weights")
      ->allow_extra_args(false);
  cmd->add_option("--exclude", args->options.exclude,
                  "Leave out the files matching this glob pattern (repeatable)")
      ->allow_extra_args(false);
  cmd->add_option("--cache-dir", args->options.cache,
                  "The cache folder (default: $HF_HUB_CACHE, else $HF_HOME/hub, else "
                  "~/.cache/huggingface/hub)");
  cmd->callback([args] { run_download(*args); });
}

}  // namespace ft::cli
