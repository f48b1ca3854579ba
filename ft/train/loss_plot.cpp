#include "ft/train/loss_plot.h"

#include <zlib.h>  // defines: compress2, compressBound, crc32

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>

#include <nlohmann/json.hpp>

#include "ft/core/error.h"

// Note [Loss plots]
// ~~~~~~~~~~~~~~~~~
// Two panels share the step axis: the loss (training, a line; validation, a line with a
// dot per evaluation) on top, the learning rate below. Each axis spans its data with 5%
// to spare and carries five evenly spaced ticks. The SVG labels the ticks and the panels;
// the PNG, drawn here pixel by pixel and compressed with zlib, has the same layout, grid
// and colours without text. Both are computed from the same Layout, so a point sits at
// the same pixel in either.

namespace ft::train {

namespace fs = std::filesystem;

namespace {

constexpr const char* kPlace = "plot";
constexpr const char* kTrainColour = "#1f77b4";
constexpr const char* kValColour = "#ff7f0e";
constexpr const char* kRateColour = "#2ca02c";

struct Range {
  double lo = 0, hi = 1;
};

Range span(const std::vector<std::pair<double, double>>& points, bool x) {
  Range r{1e300, -1e300};
  for (const auto& [px, py] : points) {
    const double v = x ? px : py;
    r.lo = std::min(r.lo, v);
    r.hi = std::max(r.hi, v);
  }
  if (r.lo > r.hi) return {0, 1};
  if (r.hi - r.lo < 1e-12 * std::max(1.0, std::abs(r.hi))) {
    r.lo -= 1;
    r.hi += 1;
  }
  const double pad = 0.05 * (r.hi - r.lo);
  return {r.lo - pad, r.hi + pad};
}

// A panel: its pixel box and the data ranges it maps onto it.
struct Panel {
  double left, top, width, height;
  Range x, y;
  double px(double v) const { return left + (v - x.lo) / (x.hi - x.lo) * width; }
  double py(double v) const { return top + height - (v - y.lo) / (y.hi - y.lo) * height; }
};

struct Layout {
  Panel loss, rate;
};

Layout layout(const LossCurves& c, int width, int height) {
  std::vector<std::pair<double, double>> all = c.train_loss;
  all.insert(all.end(), c.val_loss.begin(), c.val_loss.end());
  const Range steps = span(all, true);
  const double left = 80, right = 20, top = 30, gap = 50, bottom = 45;
  const double inner = height - top - gap - bottom;
  Layout l;
  l.loss = {left, top, width - left - right, inner * 0.68, steps, span(all, false)};
  l.rate = {left,  top + inner * 0.68 + gap,    width - left - right, inner * 0.32,
            steps, span(c.learning_rate, false)};
  return l;
}

std::string number(double v) {
  char out[32];
  std::snprintf(out, sizeof out, "%.4g", v);
  return out;
}

void svg_axes(std::ostringstream& s, const Panel& p, const std::string& title) {
  s << "<rect x='" << p.left << "' y='" << p.top << "' width='" << p.width << "' height='"
    << p.height << "' fill='none' stroke='black'/>\n";
  for (int i = 0; i <= 4; ++i) {
    const double xv = p.x.lo + (p.x.hi - p.x.lo) * i / 4, yv = p.y.lo + (p.y.hi - p.y.lo) * i / 4;
    const double x = p.px(xv), y = p.py(yv);
    s << "<line x1='" << x << "' y1='" << p.top << "' x2='" << x << "' y2='" << p.top + p.height
      << "' stroke='#dddddd'/>\n"
      << "<line x1='" << p.left << "' y1='" << y << "' x2='" << p.left + p.width << "' y2='" << y
      << "' stroke='#dddddd'/>\n"
      << "<text class='xtick' x='" << x << "' y='" << p.top + p.height + 16
      << "' text-anchor='middle'>" << number(xv) << "</text>\n"
      << "<text class='ytick' x='" << p.left - 6 << "' y='" << y + 4 << "' text-anchor='end'>"
      << number(yv) << "</text>\n";
  }
  s << "<text x='" << p.left << "' y='" << p.top - 8 << "'>" << title << "</text>\n";
}

void svg_line(std::ostringstream& s, const Panel& p,
              const std::vector<std::pair<double, double>>& v, const char* id, const char* colour,
              bool dots) {
  if (v.empty()) return;
  s << "<polyline id='" << id << "' fill='none' stroke='" << colour << "' stroke-width='1.5' "
    << "points='";
  for (size_t i = 0; i < v.size(); ++i)
    s << (i ? " " : "") << number(p.px(v[i].first)) << "," << number(p.py(v[i].second));
  s << "'/>\n";
  if (dots)
    for (const auto& [x, y] : v)
      s << "<circle cx='" << number(p.px(x)) << "' cy='" << number(p.py(y)) << "' r='3' fill='"
        << colour << "'/>\n";
}

// An RGB canvas with lines and boxes.
struct Canvas {
  int width, height;
  std::vector<uint8_t> rgb;
  Canvas(int w, int h) : width(w), height(h), rgb(size_t(w) * h * 3, 255) {}
  void dot(int x, int y, uint32_t colour) {
    if (x < 0 || y < 0 || x >= width || y >= height) return;
    uint8_t* p = &rgb[(size_t(y) * width + x) * 3];
    p[0] = uint8_t(colour >> 16), p[1] = uint8_t(colour >> 8), p[2] = uint8_t(colour);
  }
  void line(double x0, double y0, double x1, double y1, uint32_t colour, int thick = 1) {
    const int n = int(std::max(std::abs(x1 - x0), std::abs(y1 - y0))) + 1;
    for (int i = 0; i <= n; ++i) {
      const double t = double(i) / n;
      const int x = int(std::lround(x0 + (x1 - x0) * t)), y = int(std::lround(y0 + (y1 - y0) * t));
      for (int dx = 0; dx < thick; ++dx)
        for (int dy = 0; dy < thick; ++dy) dot(x + dx, y + dy, colour);
    }
  }
};

uint32_t rgb_of(const char* hex) {
  return uint32_t(std::stoul(std::string(hex + 1), nullptr, 16));
}

void png_axes(Canvas& c, const Panel& p) {
  for (int i = 0; i <= 4; ++i) {
    const double x = p.left + p.width * i / 4, y = p.top + p.height * i / 4;
    c.line(x, p.top, x, p.top + p.height, 0xDDDDDD);
    c.line(p.left, y, p.left + p.width, y, 0xDDDDDD);
  }
  c.line(p.left, p.top, p.left + p.width, p.top, 0);
  c.line(p.left, p.top + p.height, p.left + p.width, p.top + p.height, 0);
  c.line(p.left, p.top, p.left, p.top + p.height, 0);
  c.line(p.left + p.width, p.top, p.left + p.width, p.top + p.height, 0);
}

void png_line(Canvas& c, const Panel& p, const std::vector<std::pair<double, double>>& v,
              const char* colour, bool dots) {
  const uint32_t rgb = rgb_of(colour);
  for (size_t i = 1; i < v.size(); ++i)
    c.line(p.px(v[i - 1].first), p.py(v[i - 1].second), p.px(v[i].first), p.py(v[i].second), rgb,
           2);
  if (dots)
    for (const auto& [x, y] : v)
      for (int d = -2; d <= 2; ++d) c.line(p.px(x) - 2, p.py(y) + d, p.px(x) + 2, p.py(y) + d, rgb);
}

void put_u32(std::string& out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out += char((v >> shift) & 0xFF);
}

void png_chunk(std::string& out, const char* type, const std::string& data) {
  put_u32(out, uint32_t(data.size()));
  const std::string body = std::string(type, 4) + data;
  out += body;
  put_u32(out,
          uint32_t(::crc32(0, reinterpret_cast<const Bytef*>(body.data()), uInt(body.size()))));
}

}  // namespace

LossCurves read_loss_curves(const fs::path& metrics) {
  std::ifstream in(metrics);
  FT_CHECK(in, kPlace, metrics.string(), ": no such file (a run's metrics.jsonl)");
  std::map<int64_t, std::pair<double, double>> steps;  // step -> (loss, lr)
  std::map<int64_t, double> evals;
  std::string line;
  while (std::getline(in, line)) {
    const auto j = nlohmann::json::parse(line, nullptr, false);
    if (!j.is_object() || !j.contains("step") || !j["step"].is_number_integer()) continue;
    const int64_t step = j["step"].get<int64_t>();
    if (j.contains("val_loss") && j["val_loss"].is_number()) {
      evals[step] = j["val_loss"].get<double>();
    } else if (j.contains("loss") && j["loss"].is_number() && j.contains("learning_rate") &&
               j["learning_rate"].is_number()) {
      steps[step] = {j["loss"].get<double>(), j["learning_rate"].get<double>()};
    }
  }
  FT_CHECK(!steps.empty(), kPlace, metrics.string(), ": no step records");
  LossCurves c;
  for (const auto& [step, v] : steps) {
    if (!std::isfinite(v.first)) continue;  // an overflowed step has no loss to draw
    c.train_loss.emplace_back(double(step), v.first);
    c.learning_rate.emplace_back(double(step), v.second);
  }
  for (const auto& [step, loss] : evals)
    if (std::isfinite(loss)) c.val_loss.emplace_back(double(step), loss);
  return c;
}

std::string loss_plot_svg(const LossCurves& c, int width, int height) {
  const Layout l = layout(c, width, height);
  std::ostringstream s;
  s << "<svg xmlns='http://www.w3.org/2000/svg' width='" << width << "' height='" << height
    << "' viewBox='0 0 " << width << " " << height << "' font-family='sans-serif' "
    << "font-size='11'>\n<rect width='100%' height='100%' fill='white'/>\n";
  svg_axes(s, l.loss, "loss");
  svg_axes(s, l.rate, "learning rate");
  svg_line(s, l.loss, c.train_loss, "train-loss", kTrainColour, false);
  svg_line(s, l.loss, c.val_loss, "val-loss", kValColour, true);
  svg_line(s, l.rate, c.learning_rate, "learning-rate", kRateColour, false);
  const double legend_x = l.loss.left + l.loss.width - 160;
  s << "<text x='" << legend_x << "' y='" << l.loss.top - 8 << "' fill='" << kTrainColour
    << "'>training</text>\n";
  if (!c.val_loss.empty())
    s << "<text x='" << legend_x + 70 << "' y='" << l.loss.top - 8 << "' fill='" << kValColour
      << "'>validation</text>\n";
  s << "<text x='" << l.rate.left + l.rate.width / 2 << "' y='" << height - 8
    << "' text-anchor='middle'>step</text>\n</svg>\n";
  return s.str();
}

std::string loss_plot_png(const LossCurves& c, int width, int height) {
  const Layout l = layout(c, width, height);
  Canvas canvas(width, height);
  png_axes(canvas, l.loss);
  png_axes(canvas, l.rate);
  png_line(canvas, l.loss, c.train_loss, kTrainColour, false);
  png_line(canvas, l.loss, c.val_loss, kValColour, true);
  png_line(canvas, l.rate, c.learning_rate, kRateColour, false);

  std::string raw;
  raw.reserve(size_t(height) * (width * 3 + 1));
  for (int y = 0; y < height; ++y) {
    raw += '\0';  // filter: none
    raw.append(reinterpret_cast<const char*>(&canvas.rgb[size_t(y) * width * 3]),
               size_t(width) * 3);
  }
  uLongf size = compressBound(uLong(raw.size()));
  std::string packed(size, '\0');
  FT_CHECK(compress2(reinterpret_cast<Bytef*>(packed.data()), &size,
                     reinterpret_cast<const Bytef*>(raw.data()), uLong(raw.size()), 9) == Z_OK,
           kPlace, "zlib failed to compress the image");
  packed.resize(size);

  std::string png = "\x89PNG\r\n\x1a\n";
  std::string header;
  put_u32(header, uint32_t(width));
  put_u32(header, uint32_t(height));
  header +=
      std::string("\x08\x02\x00\x00\x00", 5);  // 8 bits, RGB, deflate, no filter, no interlace
  png_chunk(png, "IHDR", header);
  png_chunk(png, "IDAT", packed);
  png_chunk(png, "IEND", "");
  return png;
}

void write_loss_plot(const fs::path& metrics, const fs::path& out) {
  const std::string ext = out.extension().string();
  FT_CHECK(ext == ".svg" || ext == ".png", kPlace, out.string(), ": give a .svg or .png file name");
  const LossCurves curves = read_loss_curves(metrics);
  const std::string bytes = ext == ".svg" ? loss_plot_svg(curves) : loss_plot_png(curves);
  const fs::path temp = out.string() + ".tmp";
  {
    std::ofstream f(temp, std::ios::binary);
    f << bytes;
    FT_CHECK(f.good(), kPlace, temp.string(), ": cannot write");
  }
  std::error_code ec;
  fs::rename(temp, out, ec);
  FT_CHECK(!ec, kPlace, out.string(), ": cannot write: ", ec.message());
}

}  // namespace ft::train
