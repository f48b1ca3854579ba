// The jobs of ft serve in a SQLite database (JOBS_DIR/jobs.db): every change is committed
// before the call returns, so the store survives the server's restart or kill -9.
#pragma once

#include <filesystem>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "ft/serve/job.h"

struct sqlite3;

namespace ft::serve {

class JobStore {
 public:
  // Opens or creates the database. Throws ft::Error naming the file when it cannot.
  explicit JobStore(const std::filesystem::path& file);
  ~JobStore();
  JobStore(const JobStore&) = delete;
  JobStore& operator=(const JobStore&) = delete;

  // Adds a job; its id must be new.
  void insert(const Job& job);
  // Replaces the stored job of the same id.
  void update(const Job& job);
  std::optional<Job> get(const std::string& id) const;
  // Newest first; only those of `status` when given.
  std::vector<Job> list(std::optional<JobStatus> status = std::nullopt) const;
  // The oldest queued job.
  std::optional<Job> next_queued() const;
  bool remove(const std::string& id);

 private:
  void exec(const char* sql) const;
  sqlite3* db_ = nullptr;
  std::filesystem::path file_;
  mutable std::mutex mutex_;  // one connection, used by the API's threads and the runner
};

}  // namespace ft::serve
