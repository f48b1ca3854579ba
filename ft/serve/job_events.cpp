#include "ft/serve/job_events.h"

#include <fstream>

namespace ft::serve {

using nlohmann::json;

std::vector<std::string> read_new_lines(const std::filesystem::path& file, uint64_t& offset) {
  std::vector<std::string> lines;
  std::ifstream in(file, std::ios::binary);
  if (!in) return lines;
  in.seekg(0, std::ios::end);
  const auto size = static_cast<uint64_t>(in.tellg());
  if (size <= offset) return lines;
  in.seekg(static_cast<std::streamoff>(offset));
  std::string chunk(size - offset, '\0');
  in.read(chunk.data(), static_cast<std::streamsize>(chunk.size()));
  chunk.resize(static_cast<size_t>(in.gcount()));
  size_t start = 0;
  for (size_t nl = chunk.find('\n'); nl != std::string::npos; nl = chunk.find('\n', start)) {
    if (nl > start) lines.push_back(chunk.substr(start, nl - start));
    start = nl + 1;
  }
  offset += start;
  return lines;
}

void JobSummary::add(const std::string& line) {
  const json e = json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (!e.is_object() || !e.contains("event") || !e["event"].is_string()) return;
  ++events_;
  const std::string kind = e["event"];
  step_ = e.value("step", step_);
  total_steps_ = e.value("total_steps", total_steps_);
  if (kind == "started") {
    started_ = true;
  } else if (kind == "step") {
    metrics_ = {{"step", step_},
                {"loss", e.value("loss", json())},
                {"learning_rate", e.value("learning_rate", json())},
                {"grad_norm", e.value("grad_norm", json())},
                {"tokens_per_second", e.value("tokens_per_second", json())},
                {"peak_memory_gib", e.value("peak_memory_gib", json())}};
    elapsed_ = e.value("elapsed_seconds", json());
    eta_ = e.value("eta_seconds", json());
    epoch_ = e.value("epoch", json());
  } else if (kind == "best") {
    best_ = {{"step", step_},
             {"loss", e.value("loss", json())},
             {"perplexity", e.value("perplexity", json())},
             {"accuracy", e.value("accuracy", json())}};
  } else if (kind == "finished") {
    eta_ = 0.0;
  }
}

json JobSummary::progress() const {
  if (!started_) return nullptr;
  const double percent =
      total_steps_ > 0 ? 100.0 * static_cast<double>(step_) / static_cast<double>(total_steps_)
                       : 0.0;
  return {{"step", step_},   {"total_steps", total_steps_}, {"completion_percentage", percent},
          {"epoch", epoch_}, {"elapsed_seconds", elapsed_}, {"eta_seconds", eta_}};
}

}  // namespace ft::serve
