// ft: the command. Errors become one line on stderr and a non-zero exit:
// 1 for a failure, 2 for a usage error.
#include <exception>
#include <iostream>

#include <CLI/CLI.hpp>

#include "apps/ft/commands.h"
#include "ft/core/device.h"
#include "ft/core/error.h"

int main(int argc, char** argv) {
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
  try {
    ft::use_preferred_device();  // FT_DEVICE, else the GPU when MLX has one
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << "ft: error: " << e.what() << "\n";
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
