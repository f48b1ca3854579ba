// ft demo: placeholder until the training step lands.
#include "apps/ft/commands.h"
namespace ft::cli {
void add_demo_command(CLI::App& app) { (void)app; }
}  // namespace ft::cli
