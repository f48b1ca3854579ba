// A fine-tuning job of ft serve: what the store keeps of it, and the errors the API answers
// with. docs/serve.md describes both as a client sees them.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "ft/core/error.h"

namespace ft::serve {

enum class JobStatus { queued, running, succeeded, failed, cancelled, interrupted };

// "queued", "running", ...; parse_job_status is its inverse (nullopt for another word).
const char* job_status_name(JobStatus status);
std::optional<JobStatus> parse_job_status(const std::string& name);
// succeeded, failed, cancelled or interrupted: no child runs for it.
bool has_ended(JobStatus status);

struct Job {
  std::string id;
  std::string name;
  JobStatus status = JobStatus::queued;
  std::string created_at;   // ISO 8601 UTC, "2026-12-06T20:49:13Z"
  std::string started_at;   // of the latest attempt; empty before the first
  std::string finished_at;  // of the latest attempt; empty while it runs
  int attempts = 0;         // children started for it (a resume starts another)
  nlohmann::json config;    // ft train's settings (its YAML keys), paths resolved
  std::string error;        // failed: the child's last line
  std::optional<int> exit_code;
  int pid = 0;                    // the running child's, kept across a server restart
  bool cancel_requested = false;  // the child was asked to stop by a cancel
};

// The current time as Job's timestamps write it.
std::string utc_now();

// An error the API answers with: an HTTP status, a code word and ft's message.
class ApiError : public Error {
 public:
  ApiError(int http_status, std::string code, const std::string& fact)
      : Error("serve", fact), http_status_(http_status), code_(std::move(code)) {}
  int http_status() const { return http_status_; }
  const std::string& code() const { return code_; }

 private:
  int http_status_;
  std::string code_;
};

}  // namespace ft::serve
