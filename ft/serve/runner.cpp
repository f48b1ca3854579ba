#include "ft/serve/runner.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <fstream>
#include <random>
#include <vector>

#include "ft/core/process.h"  // defines: spawn, exit_code
#include "ft/hub/cache.h"     // defines: hub::parse_repo_id, hub::cached_snapshot

namespace ft::serve {

namespace fs = std::filesystem;
using nlohmann::json;

// Note [Jobs as child processes]
// Each job is `ft train --config JOB/job.yml` in a child process of its own process group,
// its output appended to JOB/log.txt and its events to JOB/output/events.jsonl, which the
// API reads as it grows. ft train saves a checkpoint and exits when it gets SIGINT, so
// every way a job stops goes through SIGINT: a cancel sends it to the group; the server's
// own stop sends it to every child and waits; and each child asks the kernel for SIGINT
// when the server dies (PR_SET_PDEATHSIG), so even after `kill -9` of the server the
// runs save their checkpoints. At the next start the store still lists those jobs as
// running: they become interrupted, and a resume queues them again, the new child
// continuing from the last checkpoint (ft train resumes in an output folder that holds
// one). A job whose old child is still saving is not resumed until it has exited. A child
// runs in its job's folder, so a name the settings leave relative (a template file, a
// model that looks like a Hub id) never reaches a file in the server's current folder.

namespace {

[[noreturn]] void not_allowed(const Job& job, const std::string& what) {
  throw ApiError(409, "conflict",
                 "job " + job.id + " is " + job_status_name(job.status) + ": cannot " + what);
}

// Whether pid is alive and is a process of this job (its command line names the job's
// folder), not another process that took the number.
bool job_process_alive(int pid, const fs::path& job_dir) {
  if (pid <= 0 || kill(pid, 0) != 0) return false;
  std::ifstream in("/proc/" + std::to_string(pid) + "/cmdline", std::ios::binary);
  std::string cmdline((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return cmdline.find(job_dir.string()) != std::string::npos;
}

}  // namespace

JobRunner::JobRunner(RunnerOptions options)
    : options_(std::move(options)),
      store_((fs::create_directories(options_.jobs_dir), options_.jobs_dir / "jobs.db")) {
  for (Job job : store_.list(JobStatus::running)) {
    job.status = JobStatus::interrupted;
    job.finished_at = utc_now();
    if (job_process_alive(job.pid, job_dir(job.id))) kill(-job.pid, SIGINT);
    store_.update(job);
  }
}

JobRunner::~JobRunner() {
  stop();
}

fs::path JobRunner::job_dir(const std::string& id) const {
  return options_.jobs_dir / id;
}

std::string JobRunner::new_id() const {
  std::random_device device;
  char suffix[16];
  std::snprintf(suffix, sizeof suffix, "%06x", device() & 0xffffff);
  std::string stamp = utc_now();  // 2026-12-06T20:49:13Z -> 20261206-204913
  std::string compact;
  for (char c : stamp.substr(0, 19))
    if (std::isdigit(static_cast<unsigned char>(c))) compact += c;
  return "j-" + compact.substr(0, 8) + "-" + compact.substr(8) + "-" + suffix;
}

void JobRunner::start() {
  thread_ = std::thread([this] { loop(); });
}

void JobRunner::stop() {
  if (!thread_.joinable()) return;
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    for (auto& [pid, child] : children_) ask_to_stop(pid, child);
  }
  wake_.notify_all();
  thread_.join();
}

Job JobRunner::get(const std::string& id) const {
  std::optional<Job> job = store_.get(id);
  if (!job) throw ApiError(404, "not_found", "no job " + id);
  return *job;
}

Job JobRunner::submit(const JobRequest& request) {
  Job job;
  job.id = new_id();
  job.name = request.name;
  job.created_at = utc_now();
  job.config = request.train;
  if (!request.exported.is_null()) job.config["export"] = request.exported;
  const fs::path dir = job_dir(job.id);
  fs::create_directories(output_dir(job.id));
  json yml = request.train;
  yml["output-dir"] = output_dir(job.id).string();
  yml["events"] = events_file(job.id).string();
  {
    // JSON is YAML: ft train reads it as its --config.
    std::ofstream out(dir / "job.yml");
    out << yml.dump(2) << "\n";
    FT_CHECK(out.good(), "serve", (dir / "job.yml").string(), ": cannot write");
  }
  // The settings and data are checked now, so that a job that cannot run is refused at
  // once. Offline, unless the model is a Hub id still to download (the job downloads it).
  const std::string model = request.train.value("model", "");
  const auto id = hub::parse_repo_id(model);
  const bool to_download = id && !fs::exists(model) && !hub::cached_snapshot(*id);
  if (!to_download) {
    std::lock_guard lock(validate_mutex_);
    const fs::path report = dir / "validate.txt";
    SpawnOptions o;
    o.env = {"HF_HUB_OFFLINE=1"};
    o.stdout_path = report.string();
    o.stderr_path = "-";
    o.working_dir = dir.string();  // Note [Jobs as child processes]
    const int pid = spawn(
        {options_.ft_binary.string(), "train", "validate", "--config", (dir / "job.yml").string()},
        o);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (exit_code(status) != 0) {
      std::string why = last_line(report);
      std::error_code ec;
      fs::remove_all(dir, ec);
      throw ApiError(422, "invalid_config", why.empty() ? "ft train validate failed" : why);
    }
  }
  store_.insert(job);
  wake_.notify_all();
  return job;
}

Job JobRunner::cancel(const std::string& id) {
  std::lock_guard lock(mutex_);
  Job job = get(id);
  if (job.status == JobStatus::queued) {
    job.status = JobStatus::cancelled;
    job.finished_at = utc_now();
    store_.update(job);
    return job;
  }
  if (job.status != JobStatus::running) not_allowed(job, "cancel it");
  job.cancel_requested = true;
  store_.update(job);
  for (auto& [pid, child] : children_)
    if (child.job == id) ask_to_stop(pid, child);
  return job;
}

Job JobRunner::resume(const std::string& id) {
  std::lock_guard lock(mutex_);
  Job job = get(id);
  if (job.status != JobStatus::cancelled && job.status != JobStatus::failed &&
      job.status != JobStatus::interrupted)
    not_allowed(job, "resume it");
  if (job_process_alive(job.pid, job_dir(id)))
    throw ApiError(409, "conflict",
                   "job " + id + ": its previous run (pid " + std::to_string(job.pid) +
                       ") is still saving its checkpoint; try again in a moment");
  job.status = JobStatus::queued;
  job.cancel_requested = false;
  job.error.clear();
  job.exit_code.reset();
  job.finished_at.clear();
  job.pid = 0;
  store_.update(job);
  wake_.notify_all();
  return job;
}

void JobRunner::remove(const std::string& id) {
  std::lock_guard lock(mutex_);
  Job job = get(id);
  if (!has_ended(job.status)) not_allowed(job, "delete it (cancel it first)");
  if (job_process_alive(job.pid, job_dir(id)))
    throw ApiError(409, "conflict", "job " + id + ": its previous run is still stopping");
  std::error_code ec;
  fs::remove_all(job_dir(id), ec);
  FT_CHECK(!ec, "serve", job_dir(id).string(), ": cannot delete: ", ec.message());
  store_.remove(id);
  std::lock_guard summaries(summaries_mutex_);
  summaries_.erase(id);
}

json JobRunner::describe(const Job& job) {
  json progress = nullptr, metrics = nullptr, best = nullptr;
  {
    std::lock_guard lock(summaries_mutex_);
    auto& [offset, summary] = summaries_[job.id];
    for (const std::string& line : read_new_lines(events_file(job.id), offset)) summary.add(line);
    progress = summary.progress();
    metrics = summary.metrics();
    best = summary.best();
  }
  if (job.status == JobStatus::succeeded && progress.is_object()) progress["eta_seconds"] = 0.0;
  auto or_null = [](const std::string& s) { return s.empty() ? json() : json(s); };
  return {{"id", job.id},
          {"name", job.name},
          {"status", job_status_name(job.status)},
          {"created_at", job.created_at},
          {"started_at", or_null(job.started_at)},
          {"finished_at", or_null(job.finished_at)},
          {"attempts", job.attempts},
          {"config", job.config},
          {"progress", progress},
          {"metrics", metrics},
          {"best_evaluation", best},
          {"error", or_null(job.error)},
          {"exit_code", job.exit_code ? json(*job.exit_code) : json()}};
}

void JobRunner::loop() {
  std::unique_lock lock(mutex_);
  while (true) {
    reap();
    const auto now = std::chrono::steady_clock::now();
    for (auto& [pid, child] : children_)
      if (child.stop_sent != std::chrono::steady_clock::time_point{} &&
          now - child.stop_sent > options_.stop_grace)
        kill(-pid, SIGKILL);
    if (stopping_) {
      if (children_.empty()) return;
    } else {
      start_queued();
    }
    wake_.wait_for(lock, std::chrono::milliseconds(100));
  }
}

void JobRunner::reap() {
  for (auto it = children_.begin(); it != children_.end();) {
    int status = 0;
    if (waitpid(it->first, &status, WNOHANG) == it->first) {
      Child child = it->second;
      it = children_.erase(it);
      finish(child, status);
    } else {
      ++it;
    }
  }
}

void JobRunner::start_queued() {
  while (static_cast<int>(children_.size()) < options_.max_concurrent) {
    std::optional<Job> job = store_.next_queued();
    if (!job) return;
    launch(*job, /*exporting=*/false);
  }
}

void JobRunner::launch(Job job, bool exporting) {
  const fs::path dir = job_dir(job.id);
  std::vector<std::string> args{options_.ft_binary.string()};
  if (!exporting) {
    args.insert(args.end(), {"train", "--config", (dir / "job.yml").string()});
    job.attempts += 1;
    job.started_at = utc_now();
    job.finished_at.clear();
  } else {
    // The trained adapter merged into its base, or the fine-tuned model, as one GGUF file.
    const json& e = job.config["export"];
    const bool full = job.config.value("method", "lora") == "full";
    const fs::path out = output_dir(job.id);
    args.insert(args.end(),
                {"export", full ? (out / "model").string() : job.config.value("model", "")});
    if (!full) args.insert(args.end(), {"--adapter", (out / "adapter").string()});
    args.insert(args.end(), {"--format", "gguf", "--type", e.value("type", "q8_0"), "--out",
                             (out / "export" / "model.gguf").string()});
    std::error_code ec;
    fs::create_directories(out / "export", ec);
  }
  int pid = 0;
  try {
    SpawnOptions o;
    o.stdout_path = log_file(job.id).string();
    o.stderr_path = "-";
    o.death_signal = SIGINT;
    o.working_dir = job_dir(job.id).string();
    pid = spawn(args, o);
  } catch (const Error& e) {
    job.status = JobStatus::failed;
    job.error = e.fact();
    job.finished_at = utc_now();
    store_.update(job);
    return;
  }
  job.status = JobStatus::running;
  job.pid = pid;
  store_.update(job);
  children_[pid] = Child{job.id, exporting, {}};
  if (job.cancel_requested) ask_to_stop(pid, children_[pid]);
}

void JobRunner::ask_to_stop(int pid, Child& child) {
  if (child.stop_sent == std::chrono::steady_clock::time_point{}) {
    kill(-pid, SIGINT);
    child.stop_sent = std::chrono::steady_clock::now();
  }
}

void JobRunner::finish(const Child& child, int wait_status) {
  std::optional<Job> found = store_.get(child.job);
  if (!found) return;
  Job job = *found;
  const int code = exit_code(wait_status);
  job.exit_code = code;
  job.pid = 0;
  const bool export_pending = !child.exporting && job.config.contains("export");
  if (code == 0 && export_pending && !stopping_ && !job.cancel_requested) {
    launch(job, /*exporting=*/true);
    return;
  }
  if (code == 0 && !export_pending) {
    job.status = JobStatus::succeeded;  // done, even if a cancel came too late to matter
  } else if (job.cancel_requested) {
    job.status = JobStatus::cancelled;
  } else if (stopping_) {
    job.status = JobStatus::interrupted;
  } else {
    job.status = JobStatus::failed;
    job.error = last_line(log_file(job.id));
    if (job.error.empty()) job.error = "ft exited with status " + std::to_string(code);
  }
  job.finished_at = utc_now();
  store_.update(job);
}

}  // namespace ft::serve
