// ft plot: a run's loss and learning-rate curves as an SVG or PNG image
// (ft/train/loss_plot.h).
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>

#include "apps/ft/commands.h"
#include "ft/train/loss_plot.h"

namespace ft::cli {

void add_plot_command(CLI::App& app) {
  struct Args {
    std::string run;
    std::string out;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = app.add_subcommand(
      "plot", "Plot a run's training and validation loss and learning rate against the steps");
  cmd->add_option("run", args->run, "The run's output folder (or its metrics.jsonl)")->required();
  cmd->add_option("--out", args->out, "The image, .svg or .png (default: RUN/loss.svg)");
  cmd->callback([args] {
    namespace fs = std::filesystem;
    const fs::path run = args->run;
    const fs::path metrics = fs::is_directory(run) ? run / "metrics.jsonl" : run;
    const fs::path out =
        args->out.empty() ? metrics.parent_path() / "loss.svg" : fs::path(args->out);
    train::write_loss_plot(metrics, out);
    std::cout << out.string() << "\n";
  });
}

}  // namespace ft::cli
