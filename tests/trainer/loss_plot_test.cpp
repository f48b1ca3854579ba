// The loss plot: its curves read from metrics.jsonl, and where they land in the SVG and
// the PNG (decoded here: zlib, then the pixels).
#include "ft/train/loss_plot.h"

#include <gtest/gtest.h>
#include <unistd.h>
#include <zlib.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "ft/core/error.h"

namespace fs = std::filesystem;
using ft::train::LossCurves;

namespace {

fs::path metrics_file(const std::string& name, const std::string& text) {
  const fs::path file =
      fs::temp_directory_path() / ("ft_plot_" + std::to_string(::getpid()) + "_" + name);
  std::ofstream(file) << text;
  return file;
}

// A run of 10 steps with a falling loss, evaluated at 5 and 10, resumed after step 8 (its
// steps 9 and 10 written twice, the last record counts).
const char* kMetrics = R"({"step":1,"loss":4.0,"learning_rate":0.001}
{"step":2,"loss":3.5,"learning_rate":0.001}
{"step":3,"loss":3.0,"learning_rate":0.0009}
{"step":4,"loss":2.6,"learning_rate":0.0008}
{"step":5,"loss":2.2,"learning_rate":0.0007}
{"step":5,"val_loss":2.5,"val_ppl":12.2}
{"step":6,"loss":2.0,"learning_rate":0.0006}
{"step":7,"loss":1.8,"learning_rate":0.0005}
{"step":8,"loss":1.7,"learning_rate":0.0004}
{"step":9,"loss":9.9,"learning_rate":0.0003}
{"step":9,"loss":1.6,"learning_rate":0.0003}
{"step":10,"loss":1.5,"learning_rate":0.0002}
{"step":10,"val_loss":2.0,"val_ppl":7.4}
{"step":11,"lo
)";

std::vector<std::pair<double, double>> polyline(const std::string& svg, const std::string& id) {
  const std::regex re("<polyline id='" + id + "'[^>]*points='([^']*)'");
  std::smatch m;
  if (!std::regex_search(svg, m, re)) return {};
  std::vector<std::pair<double, double>> out;
  std::istringstream in(m[1].str());
  std::string pair;
  while (in >> pair) {
    const size_t comma = pair.find(',');
    out.emplace_back(std::stod(pair.substr(0, comma)), std::stod(pair.substr(comma + 1)));
  }
  return out;
}

}  // namespace

TEST(LossPlot, CurvesAreTheLastRecordOfEachStep) {
  const LossCurves c = ft::train::read_loss_curves(metrics_file("curves.jsonl", kMetrics));
  ASSERT_EQ(c.train_loss.size(), 10u);
  EXPECT_EQ(c.train_loss[8], (std::pair<double, double>{9, 1.6}));
  EXPECT_EQ(c.val_loss, (std::vector<std::pair<double, double>>{{5, 2.5}, {10, 2.0}}));
  EXPECT_EQ(c.learning_rate.back(), (std::pair<double, double>{10, 0.0002}));
}

TEST(LossPlot, TheSvgPlacesEveryPointOnItsAxes) {
  const LossCurves c = ft::train::read_loss_curves(metrics_file("svg.jsonl", kMetrics));
  const std::string svg = ft::train::loss_plot_svg(c, 800, 560);
  const auto train = polyline(svg, "train-loss"), val = polyline(svg, "val-loss"),
             rate = polyline(svg, "learning-rate");
  ASSERT_EQ(train.size(), 10u);
  ASSERT_EQ(val.size(), 2u);
  ASSERT_EQ(rate.size(), 10u);
  // Steps go right at an even pace; a lower loss is drawn lower (a larger y).
  for (size_t i = 1; i < train.size(); ++i) {
    EXPECT_NEAR(train[i].first - train[i - 1].first, train[1].first - train[0].first, 0.15);
    EXPECT_GT(train[i].second, train[i - 1].second) << i;
  }
  // The validation points share the step axis: step 5 and 10 sit over training's.
  EXPECT_NEAR(val[0].first, train[4].first, 0.05);
  EXPECT_NEAR(val[1].first, train[9].first, 0.05);
  // Loss 2.2 (training, step 5) and 2.5 (validation, step 5): the axis is linear.
  const double per_unit = (train[0].second - train[9].second) / (4.0 - 1.5);
  EXPECT_NEAR(val[0].second - train[4].second, per_unit * 0.3, 0.15);
  // The learning-rate panel lies below the loss panel.
  EXPECT_GT(rate[0].second, train[0].second);
  // Ticks label both ends of the step axis (data 1..10 with 5% to spare each side).
  EXPECT_NE(svg.find(">0.55</text>"), std::string::npos);
  EXPECT_NE(svg.find(">10.45</text>"), std::string::npos);
  EXPECT_NE(svg.find(">loss</text>"), std::string::npos);
  EXPECT_NE(svg.find(">learning rate</text>"), std::string::npos);
}

TEST(LossPlot, ThePngHasTheCurvesPixels) {
  const LossCurves c = ft::train::read_loss_curves(metrics_file("png.jsonl", kMetrics));
  const std::string png = ft::train::loss_plot_png(c, 400, 300);
  ASSERT_EQ(png.substr(0, 8), std::string("\x89PNG\r\n\x1a\n"));
  auto u32 = [&](size_t at) {
    return uint32_t(uint8_t(png[at])) << 24 | uint32_t(uint8_t(png[at + 1])) << 16 |
           uint32_t(uint8_t(png[at + 2])) << 8 | uint32_t(uint8_t(png[at + 3]));
  };
  ASSERT_EQ(png.substr(12, 4), "IHDR");
  EXPECT_EQ(u32(16), 400u);
  EXPECT_EQ(u32(20), 300u);
  const size_t idat = png.find("IDAT");
  ASSERT_NE(idat, std::string::npos);
  const uint32_t n = u32(idat - 4);
  std::vector<uint8_t> raw(size_t(300) * (400 * 3 + 1));
  uLongf size = raw.size();
  ASSERT_EQ(uncompress(raw.data(), &size, reinterpret_cast<const Bytef*>(png.data() + idat + 4), n),
            Z_OK);
  ASSERT_EQ(size, raw.size());
  // Where the SVG puts training's first point, the PNG has its colour (#1f77b4).
  const auto train = polyline(ft::train::loss_plot_svg(c, 400, 300), "train-loss");
  const int x = int(std::lround(train[0].first)), y = int(std::lround(train[0].second));
  int coloured = 0;
  for (int dy = -1; dy <= 1; ++dy)
    for (int dx = -1; dx <= 1; ++dx) {
      const uint8_t* p = &raw[size_t(y + dy) * (400 * 3 + 1) + 1 + size_t(x + dx) * 3];
      coloured += p[0] == 0x1f && p[1] == 0x77 && p[2] == 0xb4;
    }
  EXPECT_GE(coloured, 2);
  // And far from any curve, the background is white.
  const uint8_t* corner = &raw[size_t(5) * (400 * 3 + 1) + 1 + size_t(5) * 3];
  EXPECT_EQ(corner[0] & corner[1] & corner[2], 255);
}

TEST(LossPlot, BadInputIsAnError) {
  EXPECT_THROW(ft::train::read_loss_curves("/nonexistent/metrics.jsonl"), ft::Error);
  EXPECT_THROW(ft::train::read_loss_curves(metrics_file("empty.jsonl", "{}\n")), ft::Error);
  EXPECT_THROW(ft::train::write_loss_plot(metrics_file("ok.jsonl", kMetrics), "/tmp/x.jpg"),
               ft::Error);
}
