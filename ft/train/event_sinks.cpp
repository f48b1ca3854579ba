#include "ft/train/event_sinks.h"

#include <unistd.h>  // defines: isatty, STDERR_FILENO

#include <algorithm>
#include <cmath>
#include <fstream>
#include <iostream>

#include "ft/core/device.h"  // defines: format_bytes
#include "ft/core/error.h"

namespace ft::train {

namespace fs = std::filesystem;

const char* stop_reason_text(StopReason reason) {
  switch (reason) {
    case StopReason::finished:
      return "finished";
    case StopReason::early_stopped:
      return "stopped early";
    case StopReason::stop_requested:
      return "interrupted";
    case StopReason::step_limit:
      return "step limit";
  }
  return "finished";
}

std::string format_duration(double seconds) {
  const int64_t s = std::max<int64_t>(0, std::llround(seconds));
  char out[32];
  if (s >= 3600)
    std::snprintf(out, sizeof out, "%lld:%02lld:%02lld", static_cast<long long>(s / 3600),
                  static_cast<long long>(s / 60 % 60), static_cast<long long>(s % 60));
  else
    std::snprintf(out, sizeof out, "%lld:%02lld", static_cast<long long>(s / 60),
                  static_cast<long long>(s % 60));
  return out;
}

namespace {

// Keeps the records of steps up to `step`: those after it are run again after a resume.
void truncate_metrics(const fs::path& path, int64_t step) {
  std::ifstream in(path);
  if (!in) return;
  std::string kept, line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.contains("step") || !j["step"].is_number_integer())
      continue;  // a line cut by a crash
    if (j["step"].get<int64_t>() <= step) kept += line + "\n";
  }
  in.close();
  const fs::path temp = path.string() + ".tmp";
  {
    std::ofstream out(temp, std::ios::trunc);
    FT_CHECK(out, "trainer", temp.string(), ": cannot open for writing");
    out << kept;
  }
  fs::rename(temp, path);
}

}  // namespace

nlohmann::json event_json(const TrainEvent& e) {
  nlohmann::json j{{"step", e.step}, {"total_steps", e.total_steps}};
  switch (e.kind) {
    case TrainEvent::Kind::started:
      j["event"] = "started";
      j["config"] = e.config;
      break;
    case TrainEvent::Kind::step:
      j["event"] = "step";
      j["loss"] = e.record.loss;
      j["learning_rate"] = e.record.learning_rate;
      j["grad_norm"] = e.record.grad_norm;
      j["tokens_per_second"] = e.record.tokens_per_second;
      j["elapsed_seconds"] = e.elapsed_seconds;
      j["eta_seconds"] = e.eta_seconds ? nlohmann::json(*e.eta_seconds) : nlohmann::json();
      j["peak_memory_gib"] = static_cast<double>(e.peak_memory) / double(1ull << 30);
      j["epoch"] = e.epoch;
      break;
    case TrainEvent::Kind::evaluation:
    case TrainEvent::Kind::best:
      j["event"] = e.kind == TrainEvent::Kind::best ? "best" : "evaluation";
      j["loss"] = e.eval.loss;
      j["perplexity"] = e.eval.perplexity;
      j["accuracy"] = e.eval.accuracy;
      break;
    case TrainEvent::Kind::checkpoint:
      j["event"] = "checkpoint";
      j["folder"] = e.folder.string();
      break;
    case TrainEvent::Kind::finished:
      j["event"] = "finished";
      j["reason"] = stop_reason_text(e.reason);
      break;
    case TrainEvent::Kind::failed:
      j["event"] = "failed";
      j["error"] = e.error;
      break;
  }
  return j;
}

void EventsFileSink::on_event(const TrainEvent& e) {
  std::ofstream out(file_, std::ios::app);
  FT_CHECK(out, "trainer", file_.string(), ": cannot open for writing");
  out << event_json(e).dump() << "\n";
  out.flush();
  FT_CHECK(out, "trainer", file_.string(), ": write failed");
}

void MetricsFileSink::append(const std::string& line) {
  std::ofstream out(file_, std::ios::app);
  FT_CHECK(out, "trainer", file_.string(), ": cannot open for writing");
  out << line << "\n";
  out.flush();
  FT_CHECK(out, "trainer", file_.string(), ": write failed");
}

void MetricsFileSink::on_event(const TrainEvent& e) {
  switch (e.kind) {
    case TrainEvent::Kind::started:
      if (e.step == 0) {
        std::ofstream truncate(file_, std::ios::trunc);
        FT_CHECK(truncate, "trainer", file_.string(), ": cannot open for writing");
      } else {
        truncate_metrics(file_, e.step);
      }
      break;
    case TrainEvent::Kind::step: {
      const StepRecord& r = e.record;
      append(nlohmann::json{{"step", r.step},
                            {"loss", r.loss},
                            {"learning_rate", r.learning_rate},
                            {"grad_norm", r.grad_norm},
                            {"tokens", r.tokens},
                            {"tokens_per_second", r.tokens_per_second},
                            {"loss_scale", r.loss_scale},
                            {"skipped", r.skipped},
                            {"peak_memory", e.peak_memory}}
                 .dump());
      break;
    }
    case TrainEvent::Kind::evaluation:
      append(nlohmann::json{{"step", e.eval.step},
                            {"val_loss", e.eval.loss},
                            {"val_ppl", e.eval.perplexity},
                            {"val_accuracy", e.eval.accuracy},
                            {"val_tokens", e.eval.tokens}}
                 .dump());
      break;
    default:
      break;
  }
}

ConsoleSink::ConsoleSink(Style style) : style_(style) {}

ConsoleSink::Style ConsoleSink::style_for_this_terminal() {
  return ::isatty(STDERR_FILENO) ? Style::bar : Style::lines;
}

void ConsoleSink::print_above(const std::string& line) {
  if (style_ == Style::lines) {
    std::cout << line << "\n" << std::flush;
    return;
  }
  // Clear the bar's line, print, and draw the bar again below.
  std::fprintf(stderr, "\r\033[K%s\n%s", line.c_str(), bar_.c_str());
  std::fflush(stderr);
}

void ConsoleSink::on_event(const TrainEvent& e) {
  char line[256];
  switch (e.kind) {
    case TrainEvent::Kind::started:
      if (e.step > 0) print_above("resumed from step " + std::to_string(e.step));
      break;
    case TrainEvent::Kind::step: {
      const StepRecord& r = e.record;
      if (style_ == Style::lines) {
        const int64_t every = std::max<int64_t>(1, e.total_steps / 20);  // about 20 lines
        if (r.step != 1 && r.step % every != 0 && r.step != e.total_steps) break;
        std::snprintf(line, sizeof line,
                      "step %5lld/%lld  loss %.4f  lr %.2e  grad %.3f  %.0f tok/s%s",
                      static_cast<long long>(r.step), static_cast<long long>(e.total_steps), r.loss,
                      r.learning_rate, r.grad_norm, r.tokens_per_second,
                      r.skipped ? "  (overflow: update skipped)" : "");
        print_above(line);
        break;
      }
      constexpr int kWidth = 24;
      const int filled =
          e.total_steps > 0 ? int(kWidth * std::min(r.step, e.total_steps) / e.total_steps) : 0;
      std::string bar(size_t(filled), '#');
      bar.resize(kWidth, '.');
      std::snprintf(line, sizeof line,
                    "[%s] %lld/%lld  loss %.4f  lr %.2e  %.0f tok/s  %s elapsed, ETA %s  %s",
                    bar.c_str(), static_cast<long long>(r.step),
                    static_cast<long long>(e.total_steps), r.loss, r.learning_rate,
                    r.tokens_per_second, format_duration(e.elapsed_seconds).c_str(),
                    e.eta_seconds ? format_duration(*e.eta_seconds).c_str() : "-",
                    format_bytes(e.peak_memory).c_str());
      bar_ = line;
      std::fprintf(stderr, "\r\033[K%s", bar_.c_str());
      std::fflush(stderr);
      break;
    }
    case TrainEvent::Kind::evaluation:
      std::snprintf(line, sizeof line, "eval  %5lld  val loss %.4f  ppl %.2f  accuracy %.3f",
                    static_cast<long long>(e.eval.step), e.eval.loss, e.eval.perplexity,
                    e.eval.accuracy);
      print_above(line);
      break;
    case TrainEvent::Kind::checkpoint:
      print_above("checkpoint " + e.folder.string());
      break;
    case TrainEvent::Kind::best:
      break;  // the evaluation line shows it; the end says which step the output is
    case TrainEvent::Kind::finished:
    case TrainEvent::Kind::failed:
      if (style_ == Style::bar && !bar_.empty()) {
        std::fprintf(stderr, "\n");
        std::fflush(stderr);
        bar_.clear();
      }
      break;
  }
}

}  // namespace ft::train
