// A run's loss curve as an image a person opens: the training loss (and the validation
// loss, when the run evaluated) over the steps, above the learning rate, read from
// metrics.jsonl. SVG with axes, ticks and labels, or PNG (Note [Loss plots] in
// loss_plot.cpp). `ft train` writes loss.svg at the end; `ft plot RUN_DIR --out FILE` any
// time.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

namespace ft::train {

struct LossCurves {
  std::vector<std::pair<double, double>> train_loss;     // (step, loss)
  std::vector<std::pair<double, double>> val_loss;       // (step, val_loss)
  std::vector<std::pair<double, double>> learning_rate;  // (step, lr)
};

// The curves of a metrics.jsonl; a resumed run's repeated steps keep their last record.
// Throws ft::Error naming the file when it is missing or holds no step.
LossCurves read_loss_curves(const std::filesystem::path& metrics);

// The plot as SVG text; the polylines have ids train-loss, val-loss and learning-rate.
std::string loss_plot_svg(const LossCurves& curves, int width = 800, int height = 560);
// The plot as PNG bytes (RGB, 8 bits): the same axes, grid and curves, without text.
std::string loss_plot_png(const LossCurves& curves, int width = 800, int height = 560);

// Writes the plot of `metrics` to `out`, SVG or PNG by its extension (.svg, .png).
void write_loss_plot(const std::filesystem::path& metrics, const std::filesystem::path& out);

}  // namespace ft::train
