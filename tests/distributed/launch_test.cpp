// Data parallelism through ft launch on this machine's CPU: two ranks over MLX's ring
// backend on loopback against one process on the same global batches, a rank killed in
// the middle of a run, and the faults a launch refuses (Note [Data parallelism]).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <fstream>
#include <regex>
#include <thread>

#include "tests/cli_train/cli_train_util.h"

namespace {

using namespace ft::testing::cli_train;
using ft::testing::run_ft;
using Clock = std::chrono::steady_clock;

// Ranks and the one process alike run on the CPU: the comparisons are of float sums.
Result ft_cpu(const std::string& args) {
  return run_ft("FT_DEVICE=cpu " + std::string(FT_BINARY) + " " + args, "", true);
}

std::string train_args(const fs::path& out, int iterations, const std::string& seed = "7",
                       int batch_size = 4) {
  return "train " + tiny_model().string() + " " + kAddition + " --iterations " +
         std::to_string(iterations) + " --batch-size " + std::to_string(batch_size) +
         " --max-seq-length 64 --lora-rank 4" + (seed.empty() ? "" : " --seed " + seed) +
         " --output-dir " + out.string();
}

void expect_close(const std::vector<nlohmann::json>& a, const std::vector<nlohmann::json>& b,
                  const char* key, double tolerance) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    const double x = a[i][key], y = b[i][key];
    EXPECT_NEAR(x, y, tolerance * std::max(1.0, std::abs(x))) << key << " of record " << i;
  }
}

std::vector<nlohmann::json> records(const fs::path& metrics, const char* key) {
  std::vector<nlohmann::json> out;
  std::ifstream in(metrics);
  std::string line;
  while (std::getline(in, line)) {
    auto j = nlohmann::json::parse(line);
    if (j.contains(key)) out.push_back(j);
  }
  return out;
}

TEST(Launch, TwoRanksGiveTheLossesOfOneProcess) {
  const fs::path one = temp("dp_one"), two = temp("dp_two");
  const std::string extra =
      " --grad-accumulation 2 --eval-every 3 --valid-data " + kAddition + "/valid.jsonl";
  Result a = ft_cpu(train_args(one, 6) + extra);
  ASSERT_EQ(a.status, 0) << a.out;
  Result b = ft_cpu("launch -n 2 -- ft " + train_args(two, 6) + extra);
  ASSERT_EQ(b.status, 0) << b.out;
  EXPECT_NE(b.out.find("rank 1 (ring, this machine)"), std::string::npos) << b.out;
  // Per-step losses and gradient norms of the same global batches, within float rounding.
  expect_close(records(one / "metrics.jsonl", "loss"), records(two / "metrics.jsonl", "loss"),
               "loss", 1e-6);
  expect_close(records(one / "metrics.jsonl", "loss"), records(two / "metrics.jsonl", "loss"),
               "grad_norm", 1e-5);
  // Evaluation split across the ranks and summed.
  expect_close(records(one / "metrics.jsonl", "val_loss"),
               records(two / "metrics.jsonl", "val_loss"), "val_loss", 1e-6);
  EXPECT_EQ(records(two / "metrics.jsonl", "val_loss").size(), 2u);
  // One output, written by rank 0.
  EXPECT_TRUE(fs::exists(two / "adapter" / "adapter_model.safetensors"));
  fs::remove_all(one);
  fs::remove_all(two);
}

// kill -9 of rank 1: the launcher stops rank 0 and says which rank failed; launched again,
// the run resumes from its last checkpoint and gives the losses of an uninterrupted run.
TEST(Launch, AKilledRankStopsTheRunAndItResumes) {
  const fs::path killed = temp("dp_killed"), whole = temp("dp_whole");
  const std::string args = "launch -n 2 -- ft " + train_args(killed, 400) + " --save-every 10";
  const fs::path log = temp("dp_killed.log");
  const pid_t launcher = fork();
  if (launcher == 0) {
    setenv("FT_DEVICE", "cpu", 1);
    FILE* out = std::freopen(log.c_str(), "w", stdout);
    if (!out || dup2(STDOUT_FILENO, STDERR_FILENO) < 0) _exit(127);
    execl("/bin/sh", "sh", "-c", (std::string(FT_BINARY) + " " + args).c_str(), nullptr);
    _exit(127);
  }
  // Rank 1's pid, from the launcher's own line; then wait for a few checkpoints.
  const std::regex rank1(R"(rank 1 \(ring, this machine\): pid (\d+))");
  int rank1_pid = 0;
  const auto deadline = Clock::now() + std::chrono::seconds(60);
  while (Clock::now() < deadline) {
    std::ifstream in(log);
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::smatch m;
    if (rank1_pid == 0 && std::regex_search(text, m, rank1)) rank1_pid = std::stoi(m[1]);
    if (rank1_pid > 0 && step_records(killed / "metrics.jsonl").size() >= 25) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_GT(rank1_pid, 0);
  ASSERT_EQ(kill(rank1_pid, SIGKILL), 0);
  int status = 0;
  const auto killed_at = Clock::now();
  waitpid(launcher, &status, 0);
  EXPECT_LT(Clock::now() - killed_at, std::chrono::seconds(30)) << "the other rank hung";
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_NE(WEXITSTATUS(status), 0);
  std::ifstream in(log);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("rank 1 exited with status 137"), std::string::npos)
      << "exit " << WEXITSTATUS(status) << ": " << text;
  const size_t before = step_records(killed / "metrics.jsonl").size();
  ASSERT_LT(before, 400u) << "the run ended before the kill";

  Result again = ft_cpu(args);
  ASSERT_EQ(again.status, 0) << again.out;
  Result reference = ft_cpu("launch -n 2 -- ft " + train_args(whole, 400) + " --save-every 10");
  ASSERT_EQ(reference.status, 0) << reference.out;
  const std::vector<float> resumed = metric_losses(killed / "metrics.jsonl");
  const std::vector<float> uninterrupted = metric_losses(whole / "metrics.jsonl");
  ASSERT_EQ(resumed.size(), 400u);
  EXPECT_EQ(resumed, uninterrupted);
  fs::remove_all(killed);
  fs::remove_all(whole);
  fs::remove(log);
}

TEST(Launch, RanksWithOtherSettingsAreRefused) {
  const fs::path out = temp("dp_mismatch");
  // Each rank its own seed: the settings hash differs across ranks.
  const std::string command = "launch -n 2 -- sh -c '\"$0\" \"$@\" --seed $MLX_RANK' " +
                              std::string(FT_BINARY) + " " + train_args(out, 4, "");
  Result r = ft_cpu(command);
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.out.find("was started with settings or data other than rank 0's"), std::string::npos)
      << r.out;
  fs::remove_all(out);
}

TEST(Launch, BadLaunchesAreClearErrors) {
  const fs::path out = temp("dp_bad");
  const fs::path hostfile = temp("hosts.json");
  std::ofstream(hostfile) << "[{\"ips\": [\"10.0.0.1\"]}]";
  Result no_ssh = ft_cpu("launch --hostfile " + hostfile.string() + " -- ft train x y");
  EXPECT_EQ(no_ssh.status, 1);
  EXPECT_NE(no_ssh.out.find("host 0 needs \"ssh\""), std::string::npos) << no_ssh.out;
  std::ofstream(hostfile) << "[{\"ssh\": ";
  Result garbage = ft_cpu("launch --hostfile " + hostfile.string() + " -- ft train x y");
  EXPECT_NE(garbage.out.find("not JSON"), std::string::npos) << garbage.out;

  // A host that cannot be reached: its rank fails (ssh's words) and rank 0 is stopped.
  std::ofstream(hostfile)
      << R"([{"ssh": "localhost"}, {"ssh": "nohost.invalid", "ips": ["10.255.255.1"]}])";
  Result unreachable =
      ft_cpu("launch --hostfile " + hostfile.string() + " -- ft " + train_args(out, 2));
  EXPECT_EQ(unreachable.status, 1);
  EXPECT_NE(unreachable.out.find("[launch] rank 1 exited with status"), std::string::npos)
      << unreachable.out;
  EXPECT_NE(unreachable.out.find("the other ranks were stopped"), std::string::npos);

  Result mpi = ft_cpu("launch -n 2 --backend mpi -- ft " + train_args(out, 2));
  EXPECT_EQ(mpi.status, 1);
  EXPECT_NE(mpi.out.find("mpirun"), std::string::npos) << mpi.out;
  // Three ranks cannot share a batch of two rows: every rank says so, and the launcher
  // names the rank.
  Result small = ft_cpu("launch -n 3 -- ft " + train_args(out, 2, "7", 2));
  EXPECT_NE(small.status, 0);
  EXPECT_NE(small.out.find("cannot be shared by 3 ranks"), std::string::npos) << small.out;
  // A backend this MLX build lacks, named with the rank.
  Result nccl = run_ft("FT_DEVICE=cpu FT_DISTRIBUTED_BACKEND=nosuch MLX_RANK=0 " +
                           std::string(FT_BINARY) + " " + train_args(out, 2),
                       "", true);
  EXPECT_EQ(nccl.status, 1);
  EXPECT_NE(nccl.out.find("rank 0: the nosuch backend is not available"), std::string::npos)
      << nccl.out;
  fs::remove_all(out);
  fs::remove(hostfile);
}

}  // namespace

namespace {

std::string file_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// The methods and options a run may combine with data parallelism: the two ranks' losses are
// one process's (bfloat16 within its rounding).
TEST(Launch, MethodsAndOptionsKeepTheLossesOfOneProcess) {
  const std::vector<std::pair<std::string, double>> cases = {
      {" --method dora", 1e-6},    {" --quantize-bits 4 --quantize-group-size 32", 1e-6},
      {" --pack", 1e-6},           {" --grad-checkpoint", 1e-6},
      {" --dtype bfloat16", 2e-2},
  };
  for (const auto& [options, tolerance] : cases) {
    const fs::path one = temp("dp_v1"), two = temp("dp_v2");
    Result a = ft_cpu(train_args(one, 3) + options);
    ASSERT_EQ(a.status, 0) << options << ": " << a.out;
    Result b = ft_cpu("launch -n 2 -- ft " + train_args(two, 3) + options);
    ASSERT_EQ(b.status, 0) << options << ": " << b.out;
    SCOPED_TRACE(options);
    expect_close(records(one / "metrics.jsonl", "loss"), records(two / "metrics.jsonl", "loss"),
                 "loss", tolerance);
    fs::remove_all(one);
    fs::remove_all(two);
  }
}

// Sharded optimizer state: each rank keeps and updates its share, and the run's losses,
// weights and saved optimizer state are those of the unsharded run, bit for bit. Its
// checkpoint holds the whole state: one process resumes from it (with a warning about the
// number of ranks) and ends where the two ranks do, up to float rounding.
TEST(Launch, ShardedOptimizerStateGivesTheSameParameters) {
  const fs::path plain = temp("dp_plain"), sharded = temp("dp_sharded");
  const std::string full = " --method full --save-every 2";
  Result a = ft_cpu("launch -n 2 -- ft " + train_args(plain, 4) + full);
  ASSERT_EQ(a.status, 0) << a.out;
  Result b = ft_cpu("launch -n 2 -- ft " + train_args(sharded, 4) + full +
                    " --shard-optimizer-state --stop-after 2");
  ASSERT_EQ(b.status, 0) << b.out;
  const fs::path step2 = fs::path("checkpoints") / "step-000002";
  EXPECT_EQ(file_bytes(plain / step2 / "model.safetensors"),
            file_bytes(sharded / step2 / "model.safetensors"));
  const std::string state = file_bytes(sharded / step2 / "optimizer.safetensors");
  EXPECT_GT(state.size(), 1000u);
  EXPECT_EQ(file_bytes(plain / step2 / "optimizer.safetensors"), state);

  Result alone = ft_cpu(train_args(sharded, 4) + full + " --shard-optimizer-state");
  ASSERT_EQ(alone.status, 0) << alone.out;
  EXPECT_NE(alone.out.find("resuming a run of 2 rank(s) on 1"), std::string::npos) << alone.out;
  const std::vector<float> x = metric_losses(plain / "metrics.jsonl");
  const std::vector<float> y = metric_losses(sharded / "metrics.jsonl");
  ASSERT_EQ(x.size(), 4u);
  ASSERT_EQ(y.size(), 4u);
  EXPECT_EQ(x[0], y[0]);
  EXPECT_EQ(x[1], y[1]);
  for (size_t i = 2; i < 4; ++i) EXPECT_NEAR(x[i], y[i], 1e-5 * std::abs(x[i]));
  fs::remove_all(plain);
  fs::remove_all(sharded);
}

}  // namespace
