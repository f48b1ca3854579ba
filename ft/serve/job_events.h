// Reading a job's events.jsonl (train::EventsFileSink) as its child writes it: the lines
// after a byte offset, and what they say so far (progress, latest metrics, best
// evaluation), as the job object of docs/serve.md shows it.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace ft::serve {

// The complete lines of `file` from byte `offset` on; offset moves past them. A line still
// being written (no newline yet) is left for the next call. A missing file has no lines.
std::vector<std::string> read_new_lines(const std::filesystem::path& file, uint64_t& offset);

// What the events read so far say.
class JobSummary {
 public:
  // Takes one line of events.jsonl; lines that do not parse are skipped.
  void add(const std::string& line);
  nlohmann::json progress() const;                            // null before the first start
  const nlohmann::json& metrics() const { return metrics_; }  // null before the first step
  const nlohmann::json& best() const { return best_; }        // null before an evaluation
  int64_t events() const { return events_; }

 private:
  int64_t events_ = 0;
  int64_t step_ = 0;
  int64_t total_steps_ = 0;
  nlohmann::json epoch_ = nullptr;
  nlohmann::json elapsed_ = nullptr;
  nlohmann::json eta_ = nullptr;
  bool started_ = false;
  nlohmann::json metrics_ = nullptr;
  nlohmann::json best_ = nullptr;
};

}  // namespace ft::serve
