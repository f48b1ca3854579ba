// Each subcommand registers itself on the app and runs when chosen.
#pragma once

#include <CLI/CLI.hpp>

namespace ft::cli {

void add_info_command(CLI::App& app);
void add_demo_command(CLI::App& app);
void add_tokenize_command(CLI::App& app);
void add_template_command(CLI::App& app);
void add_data_command(CLI::App& app);
void add_fuse_command(CLI::App& app);
void add_generate_command(CLI::App& app);

}  // namespace ft::cli
