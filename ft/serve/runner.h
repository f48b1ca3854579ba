// The jobs of ft serve as child processes: a queue that starts `ft train` for the oldest
// queued jobs while fewer than max_concurrent run, cancels, resumes and deletes them, and
// records each change in the store. Note [Jobs as child processes] in runner.cpp.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <map>
#include <mutex>
#include <string>
#include <thread>

#include "ft/serve/job.h"
#include "ft/serve/job_events.h"
#include "ft/serve/job_settings.h"
#include "ft/serve/job_store.h"

namespace ft::serve {

struct RunnerOptions {
  std::filesystem::path jobs_dir;   // the store and one folder per job
  std::filesystem::path ft_binary;  // the `ft` that runs the jobs
  int max_concurrent = 1;
  // A cancelled or stopped child that has not exited this long after SIGINT is killed.
  std::chrono::seconds stop_grace{120};
};

class JobRunner {
 public:
  // Opens the store in jobs_dir; jobs it lists as running become interrupted (their
  // children, if still alive, are asked to stop).
  explicit JobRunner(RunnerOptions options);
  ~JobRunner();  // stop()
  JobRunner(const JobRunner&) = delete;
  JobRunner& operator=(const JobRunner&) = delete;

  // Starts the thread that runs the queue.
  void start();
  // Asks every running child to stop (SIGINT: they save a checkpoint), waits for them up to
  // the grace time, and marks their jobs interrupted. Then the queue's thread ends.
  void stop();

  // Writes the job's folder and settings, checks them with `ft train validate` (ApiError
  // 422 with ft's message when they do not pass), and queues the job.
  Job submit(const JobRequest& request);
  // ApiError 404 for an unknown id, 409 where the job's status does not allow it.
  Job cancel(const std::string& id);
  Job resume(const std::string& id);
  void remove(const std::string& id);
  Job get(const std::string& id) const;

  // The job as the API shows it (docs/serve.md), with its progress from its events.
  nlohmann::json describe(const Job& job);

  const JobStore& store() const { return store_; }
  std::filesystem::path job_dir(const std::string& id) const;
  std::filesystem::path output_dir(const std::string& id) const { return job_dir(id) / "output"; }
  std::filesystem::path events_file(const std::string& id) const {
    return output_dir(id) / "events.jsonl";
  }
  std::filesystem::path log_file(const std::string& id) const { return job_dir(id) / "log.txt"; }

 private:
  struct Child {
    std::string job;
    bool exporting = false;                             // the export after training, not ft train
    std::chrono::steady_clock::time_point stop_sent{};  // zero until asked to stop
  };
  void loop();
  void reap();
  void start_queued();
  void launch(Job job, bool exporting);
  void finish(const Child& child, int wait_status);
  void ask_to_stop(int pid, Child& child);
  std::string new_id() const;

  RunnerOptions options_;
  JobStore store_;
  std::mutex mutex_;  // children_, and every read-modify-write of a job's status
  std::condition_variable wake_;
  std::map<int, Child> children_;  // by pid
  std::atomic<bool> stopping_{false};
  std::thread thread_;
  std::mutex summaries_mutex_;
  std::map<std::string, std::pair<uint64_t, JobSummary>> summaries_;  // by job: offset, summary
  std::mutex validate_mutex_;  // one `ft train validate` at a time
};

}  // namespace ft::serve
