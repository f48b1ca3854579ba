// ft launch: the ranks of a data-parallel run (ft/train/data_parallel.h), started with the
// environment MLX's distributed backends read; docs/distributed.md.
//
//   ft launch -n 2 -- ft train MODEL DATA ...
//   ft launch --hostfile hosts.json --backend ring -- ft train ...
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <mlx/distributed/distributed.h>
#include <nlohmann/json.hpp>

#include "apps/ft/commands.h"
#include "ft/core/error.h"
#include "ft/core/process.h"
#include "ft/io/hostfile.h"           // defines: io::parse_hostfile, io::Host
#include "ft/kernels/cpu/parallel.h"  // defines: kernels::cpu::num_threads
#include "ft/train/data_parallel.h"   // defines: train::kBackendVariable

namespace ft::cli {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

struct LaunchArgs {
  int ranks = 0;
  std::string hostfile;
  std::string backend = "auto";
  std::vector<std::string> command;
};

// The hostfile's text, parsed by io::parse_hostfile.
std::vector<io::Host> read_hostfile(const std::string& file) {
  std::ifstream in(file, std::ios::binary);
  FT_CHECK(in, "launch", file, ": cannot read the hostfile");
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return io::parse_hostfile(text, file);
}

// A port of 127.0.0.1 that was free a moment ago.
int free_port() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  FT_CHECK(fd >= 0, "launch", "cannot open a socket");
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof a;
  const bool ok = bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
                  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &length) == 0;
  close(fd);
  FT_CHECK(ok, "launch", "cannot find a free port on 127.0.0.1");
  return ntohs(a.sin_port);
}

std::string quoted(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

std::atomic<int> g_signal{0};
extern "C" void on_signal(int sig) {
  g_signal = sig;
}

// Whether `name` is a program on PATH.
bool on_path(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::string dirs = path ? path : "";
  for (size_t start = 0; start <= dirs.size();) {
    const size_t end = std::min(dirs.find(':', start), dirs.size());
    if (end > start && access((dirs.substr(start, end - start) + "/" + name).c_str(), X_OK) == 0)
      return true;
    start = end + 1;
  }
  return false;
}

// MPI starts its own ranks: mpirun runs the command N times with the backend named; MLX's
// MPI backend reads mpirun's environment.
int run_under_mpi(const LaunchArgs& args, const std::vector<std::string>& command, size_t ranks) {
  FT_CHECK(args.hostfile.empty(), "launch",
           "--backend mpi takes its hosts from mpirun: give -n N, and MPI's own host settings");
  FT_CHECK(on_path("mpirun"), "launch",
           "--backend mpi needs mpirun (Open MPI) on PATH; ring needs nothing: --backend ring");
  std::vector<std::string> argv = {"mpirun", "-np", std::to_string(ranks), "-x",
                                   std::string(train::kBackendVariable) + "=mpi"};
  argv.insert(argv.end(), command.begin(), command.end());
  std::vector<char*> c;
  for (std::string& a : argv) c.push_back(a.data());
  c.push_back(nullptr);
  execvp("mpirun", c.data());
  throw Error("launch", "cannot run mpirun");
}

int run_launch(const LaunchArgs& args) {
  FT_CHECK(!args.command.empty(), "launch", "no command: ft launch -n N -- ft train ...");
  std::vector<io::Host> hosts;
  if (!args.hostfile.empty()) {
    hosts = read_hostfile(args.hostfile);
    FT_CHECK(args.ranks == 0 || args.ranks == static_cast<int>(hosts.size()), "launch", "-n ",
             args.ranks, " but ", args.hostfile, " lists ", hosts.size(), " hosts (one rank each)");
  } else {
    FT_CHECK(args.ranks >= 1, "launch", "give -n N (ranks on this machine) or --hostfile");
    hosts.assign(args.ranks, io::Host{});
  }
  const int n = static_cast<int>(hosts.size());
  std::string backend = args.backend;
  if (backend == "auto") backend = mx::distributed::is_available("nccl") ? "nccl" : "ring";
  std::vector<std::string> command = args.command;
  if (command[0] == "ft") command[0] = fs::read_symlink("/proc/self/exe").string();
  if (backend == "mpi") return run_under_mpi(args, command, hosts.size());
  const fs::path dir = fs::temp_directory_path() / ("ft-launch-" + std::to_string(getpid()));
  fs::create_directories(dir);

  // The environment of each rank: the ring's addresses, or NCCL's rendezvous.
  std::vector<std::vector<std::string>> env(n);
  json ring = json::array();
  for (int r = 0; r < n; ++r)
    ring.push_back({hosts[r].ip + ":" +
                    std::to_string(io::is_local_host(hosts[r].ssh) ? free_port() : 29500 + r)});
  const fs::path ring_file = dir / "ring.json";
  std::ofstream(ring_file) << ring.dump() << "\n";
  const int nccl_port = free_port();
  // Ranks of one machine share its cores: one share each unless the caller chose.
  const int threads = std::max(1, kernels::cpu::num_threads() / n);
  for (int r = 0; r < n; ++r) {
    env[r] = {std::string(train::kBackendVariable) + "=" + backend,
              "MLX_RANK=" + std::to_string(r)};
    if (backend == "ring") {
      env[r].push_back("MLX_HOSTFILE=" + ring_file.string());
    } else {
      env[r].insert(
          env[r].end(),
          {"MLX_WORLD_SIZE=" + std::to_string(n), "NCCL_HOST_IP=" + hosts[0].ip,
           "NCCL_PORT=" + std::to_string(nccl_port), "CUDA_VISIBLE_DEVICES=" + std::to_string(r)});
    }
    if (!std::getenv("FT_NUM_THREADS"))
      env[r].push_back("FT_NUM_THREADS=" + std::to_string(threads));
    if (!std::getenv("OPENBLAS_NUM_THREADS"))
      env[r].push_back("OPENBLAS_NUM_THREADS=" + std::to_string(threads));
  }

  struct sigaction forward {};
  forward.sa_handler = on_signal;
  sigaction(SIGINT, &forward, nullptr);
  sigaction(SIGTERM, &forward, nullptr);

  // Rank 0 speaks for the run on this terminal; every rank's errors go to a file, so that
  // a failing rank's own words can be reported.
  std::map<int, int> rank_of;  // pid -> rank
  for (int r = 0; r < n; ++r) {
    SpawnOptions o;
    o.death_signal = SIGTERM;
    o.stderr_path = (dir / ("rank-" + std::to_string(r) + ".err")).string();
    if (r > 0) o.stdout_path = (dir / ("rank-" + std::to_string(r) + ".out")).string();
    std::vector<std::string> argv = command;
    if (!io::is_local_host(hosts[r].ssh)) {
      // The ring's addresses travel in the command; the remote rank writes them to a file.
      std::string remote = "f=$(mktemp) && printf %s " + quoted(ring.dump()) + " > \"$f\" && cd " +
                           quoted(fs::current_path().string()) + " && exec env";
      for (const std::string& e : env[r])
        remote += " " + quoted(e.rfind("MLX_HOSTFILE=", 0) == 0 ? "MLX_HOSTFILE" : e);
      remote += " MLX_HOSTFILE=\"$f\"";
      for (const std::string& a : command) remote += " " + quoted(a);
      argv = {"ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", hosts[r].ssh, remote};
      o.env.clear();
    } else {
      o.env = env[r];
    }
    const int pid = spawn(argv, o);
    rank_of[pid] = r;
    std::cerr << "ft launch: rank " << r << " (" << backend << ", "
              << (io::is_local_host(hosts[r].ssh) ? "this machine" : hosts[r].ssh) << "): pid "
              << pid << "\n";
  }

  // Waits for the ranks; the first that fails (or a signal) stops the others.
  int status = 0;
  std::string failure;
  bool stopping = false;
  auto stop_all = [&](int sig) {
    for (const auto& [pid, r] : rank_of) kill(-pid, sig);
  };
  auto deadline = std::chrono::steady_clock::time_point::max();
  while (!rank_of.empty()) {
    if (const int sig = g_signal.exchange(0); sig != 0) {
      stop_all(sig);
      stopping = true;
      status = 128 + sig;
      deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    }
    int wait_status = 0;
    const int pid = waitpid(-1, &wait_status, WNOHANG);
    if (pid > 0 && rank_of.count(pid)) {
      const int first = rank_of[pid];
      rank_of.erase(pid);
      const int code = exit_code(wait_status);
      if (code != 0 && !stopping) {
        // A rank that dies takes the others' connections with it, and they fail too, maybe
        // sooner than it is reaped: the cause is the rank that a signal ended, if one did.
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
        std::vector<std::pair<int, int>> failed = {{first, code}};  // rank, code
        while (true) {
          const int other = waitpid(-1, &wait_status, WNOHANG);
          if (other <= 0) break;
          if (!rank_of.count(other)) continue;
          failed.emplace_back(rank_of[other], exit_code(wait_status));
          rank_of.erase(other);
        }
        auto cause = failed.front();
        for (const auto& f : failed)
          if (f.second > 128 && f.second != 128 + SIGTERM) cause = f;
        const std::string why = last_line(dir / ("rank-" + std::to_string(cause.first) + ".err"));
        failure = "rank " + std::to_string(cause.first) + " exited with status " +
                  std::to_string(cause.second) + (why.empty() ? "" : ": " + why);
        status = cause.second;
        stopping = true;
        stop_all(SIGTERM);
        deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
      }
      continue;
    }
    if (std::chrono::steady_clock::now() > deadline) {
      stop_all(SIGKILL);
      deadline = std::chrono::steady_clock::time_point::max();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  // Rank 0's errors belong on this terminal too.
  std::ifstream errors(dir / "rank-0.err");
  const std::string rank0((std::istreambuf_iterator<char>(errors)),
                          std::istreambuf_iterator<char>());
  std::cerr << rank0;  // (streaming an empty rdbuf would set cerr's failbit)
  std::error_code ec;
  fs::remove_all(dir, ec);
  if (!failure.empty()) throw Error("launch", failure + "; the other ranks were stopped");
  return status;
}

}  // namespace

void add_launch_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "launch",
      "Start the ranks of a data-parallel run: ft launch -n N [--backend ring|nccl|auto] -- ft "
      "train ... (docs/distributed.md)");
  auto args = std::make_shared<LaunchArgs>();
  cmd->add_option("-n,--ranks", args->ranks, "Ranks on this machine (with --hostfile: its hosts)")
      ->check(CLI::Range(1, 1024));
  cmd->add_option("--hostfile", args->hostfile,
                  "JSON list of hosts, one rank each: [{\"ssh\": \"host\", \"ips\": "
                  "[\"10.0.0.1\"]}, ...] (the format of MLX's launcher)");
  cmd->add_option("--backend", args->backend,
                  "ring (TCP: CPUs, Macs), nccl (NVIDIA GPUs), mpi (through mpirun) or auto (nccl "
                  "where this MLX has it, else ring)")
      ->check(CLI::IsMember({"ring", "nccl", "mpi", "auto"}))
      ->capture_default_str();
  cmd->add_option("command", args->command, "The command each rank runs, after --")->required();
  cmd->callback([args] {
    const int status = run_launch(*args);
    if (status != 0) std::exit(status);
  });
}

}  // namespace ft::cli
