// ft: the command. Errors become one line on stderr and a non-zero exit:
// 1 for a failure, 2 for a usage error.
#include <algorithm>
#include <exception>
#include <iostream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "apps/ft/commands.h"
#include "ft/core/device.h"
#include "ft/core/error.h"
#include "ft/core/evaluate.h"  // defines: prepare_failure_location

namespace {

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] != b[j - 1])});
      diagonal = up;
    }
  }
  return row[b.size()];
}

// The nearest of names to word, when near enough to be a slip (a third of its letters).
std::string nearest(const std::string& word, const std::vector<std::string>& names) {
  std::string best;
  size_t best_distance = std::max<size_t>(2, word.size() / 3) + 1;
  for (const std::string& name : names)
    if (const size_t d = edit_distance(word, name); d < best_distance) {
      best = name;
      best_distance = d;
    }
  return best;
}

// For a parse error over words the command did not take: the first such word named, as
// an unknown subcommand or option of the deepest command given, with the nearest known
// one. Empty when there is no such word.
std::string unknown_word_message(CLI::App& app) {
  CLI::App* command = &app;
  std::string path = "ft";
  while (!command->get_subcommands().empty()) {
    command = command->get_subcommands().front();
    path += " " + command->get_name();
  }
  for (const std::string& word : command->remaining()) {
    std::vector<std::string> names;
    std::string kind;
    if (word.rfind("--", 0) == 0) {
      kind = "option";
      for (const CLI::Option* opt : command->get_options())
        for (const std::string& name : opt->get_lnames()) names.push_back("--" + name);
    } else if (!command->get_subcommands({}).empty() && command->get_subcommands().empty()) {
      kind = "command";
      for (const CLI::App* sub : command->get_subcommands({})) names.push_back(sub->get_name());
    } else {
      continue;
    }
    const std::string key = word.substr(0, word.find('='));
    const std::string guess = nearest(key, names);
    return "unknown " + kind + " '" + key + "' for " + path +
           (guess.empty() ? "" : " (did you mean " + guess + "?)");
  }
  return "";
}

}  // namespace

int main(int argc, char** argv) {
  ft::choose_blas_core(argv);  // Note [OpenBLAS on CPUs it does not know]
  ft::keep_freed_host_memory();
  CLI::App app{"ft: fine-tune language models on MLX"};
  app.set_version_flag("--version", std::string("ft ") + FT_VERSION);
  app.require_subcommand(1);
  ft::cli::add_info_command(app);
  ft::cli::add_demo_command(app);
  ft::cli::add_tokenize_command(app);
  ft::cli::add_template_command(app);
  ft::cli::add_data_command(app);
  ft::cli::add_fuse_command(app);
  ft::cli::add_export_command(app);
  ft::cli::add_quantize_command(app);
  ft::cli::add_convert_command(app);
  ft::cli::add_generate_command(app);
  ft::cli::add_init_command(app);
  ft::cli::add_train_command(app);
  ft::cli::add_validate_command(app);
  ft::cli::add_eval_command(app);
  ft::cli::add_bench_command(app);
  ft::cli::add_download_command(app);
  ft::cli::add_plot_command(app);
  ft::cli::add_serve_command(app);
  ft::cli::add_launch_command(app);
  try {
    ft::prepare_failure_location();  // FT_LOCATE_GPU_FAILURES, before MLX starts
    ft::use_preferred_device();  // FT_DEVICE, else the GPU when MLX has one
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    const std::string unknown = unknown_word_message(app);
    std::cerr << "ft: error: " << (unknown.empty() ? e.what() : unknown) << "\n";
    return 2;
  } catch (const ft::Error& e) {
    std::cerr << "ft: error: " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "ft: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
