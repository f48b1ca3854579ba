// The job store keeps every change across a reopen (a server restart), and lists newest
// first; the events reader leaves a half-written line for later.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "ft/serve/job_events.h"
#include "ft/serve/job_store.h"

namespace ft::serve {
namespace {

namespace fs = std::filesystem;

fs::path temp(const std::string& name) {
  fs::path p =
      fs::path(::testing::TempDir()) / ("ft_serve_" + name + "_" + std::to_string(getpid()));
  fs::remove_all(p);
  fs::create_directories(p);
  return p;
}

Job job(const std::string& id) {
  Job j;
  j.id = id;
  j.name = "n-" + id;
  j.created_at = utc_now();
  j.config = {{"model", "/m"}, {"data", {"/d"}}};
  return j;
}

TEST(JobStore, ChangesSurviveAReopen) {
  const fs::path dir = temp("store");
  {
    JobStore store(dir / "jobs.db");
    store.insert(job("a"));
    store.insert(job("b"));
    store.insert(job("c"));
    Job b = *store.get("b");
    b.status = JobStatus::failed;
    b.error = "ft train: no such file";
    b.exit_code = 1;
    b.attempts = 2;
    b.pid = 1234;
    store.update(b);
    EXPECT_TRUE(store.remove("c"));
    EXPECT_FALSE(store.remove("c"));
  }
  JobStore store(dir / "jobs.db");
  const std::vector<Job> all = store.list();
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].id, "b");  // newest first
  EXPECT_EQ(all[1].id, "a");
  const Job b = *store.get("b");
  EXPECT_EQ(b.status, JobStatus::failed);
  EXPECT_EQ(b.error, "ft train: no such file");
  EXPECT_EQ(b.exit_code, 1);
  EXPECT_EQ(b.attempts, 2);
  EXPECT_EQ(b.pid, 1234);
  EXPECT_EQ(b.config["data"][0], "/d");
  EXPECT_FALSE(store.get("a")->exit_code.has_value());
  EXPECT_EQ(store.list(JobStatus::failed).size(), 1u);
  EXPECT_EQ(store.next_queued()->id, "a");
  EXPECT_FALSE(store.get("c").has_value());
  fs::remove_all(dir);
}

TEST(JobStore, AnUnwritableFileIsAnError) {
  EXPECT_THROW(JobStore("/proc/no/such/jobs.db"), Error);
}

TEST(JobEvents, AHalfWrittenLineWaits) {
  const fs::path dir = temp("events");
  const fs::path file = dir / "events.jsonl";
  uint64_t offset = 0;
  EXPECT_TRUE(read_new_lines(file, offset).empty());  // no file yet
  std::ofstream(file) << "{\"event\":\"started\",\"step\":0,\"total_steps\":8,"
                         "\"config\":{\"iterations\":0,\"epochs\":2}}\n{\"event\":\"st";
  std::vector<std::string> lines = read_new_lines(file, offset);
  ASSERT_EQ(lines.size(), 1u);
  JobSummary summary;
  summary.add(lines[0]);
  std::ofstream(file, std::ios::app)
      << "ep\",\"step\":2,\"total_steps\":8,\"loss\":1.5,\"eta_seconds\":3,\"epoch\":0.5}\n";
  lines = read_new_lines(file, offset);
  ASSERT_EQ(lines.size(), 1u);
  summary.add(lines[0]);
  summary.add("not json");
  EXPECT_EQ(summary.events(), 2);
  const nlohmann::json p = summary.progress();
  EXPECT_EQ(p["step"], 2);
  EXPECT_DOUBLE_EQ(p["completion_percentage"].get<double>(), 25.0);
  EXPECT_DOUBLE_EQ(p["epoch"].get<double>(), 0.5);
  EXPECT_EQ(summary.metrics()["loss"], 1.5);
  EXPECT_TRUE(summary.best().is_null());
  fs::remove_all(dir);
}

}  // namespace
}  // namespace ft::serve
