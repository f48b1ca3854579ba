#include "ft/serve/job.h"

#include <chrono>
#include <ctime>

namespace ft::serve {

const char* job_status_name(JobStatus status) {
  switch (status) {
    case JobStatus::queued:
      return "queued";
    case JobStatus::running:
      return "running";
    case JobStatus::succeeded:
      return "succeeded";
    case JobStatus::failed:
      return "failed";
    case JobStatus::cancelled:
      return "cancelled";
    case JobStatus::interrupted:
      return "interrupted";
  }
  return "queued";
}

std::optional<JobStatus> parse_job_status(const std::string& name) {
  for (JobStatus s : {JobStatus::queued, JobStatus::running, JobStatus::succeeded,
                      JobStatus::failed, JobStatus::cancelled, JobStatus::interrupted})
    if (name == job_status_name(s)) return s;
  return std::nullopt;
}

bool has_ended(JobStatus status) {
  return status != JobStatus::queued && status != JobStatus::running;
}

std::string utc_now() {
  const std::time_t now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  gmtime_r(&now, &tm);
  char out[32];
  std::strftime(out, sizeof out, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return out;
}

}  // namespace ft::serve
