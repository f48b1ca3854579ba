// ft serve: fine-tuning jobs behind an HTTP API with a dashboard (docs/serve.md).
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "apps/ft/commands.h"
#include "ft/core/error.h"
#ifdef FT_HAVE_SERVE
#include "ft/serve/server.h"
#endif

namespace ft::cli {
namespace {

namespace fs = std::filesystem;

struct ServeArgs {
  std::string host = "127.0.0.1";
  int port = 8080;
  std::string token_file;
  std::vector<std::string> roots;
  std::string jobs_dir;
  int max_concurrent = 1;
  int max_body_kib = 256;
};

#ifdef FT_HAVE_SERVE

std::atomic<bool> g_stop{false};
extern "C" void on_stop_signal(int) {
  g_stop = true;
}

fs::path default_jobs_dir() {
  const char* data = std::getenv("XDG_DATA_HOME");
  if (data && *data) return fs::path(data) / "ft" / "jobs";
  const char* home = std::getenv("HOME");
  FT_CHECK(home && *home, "serve", "no HOME to put the jobs in: give --jobs-dir");
  return fs::path(home) / ".local" / "share" / "ft" / "jobs";
}

std::string random_token() {
  std::random_device device;
  std::string token;
  const char* hex = "0123456789abcdef";
  for (int i = 0; i < 32; ++i) {
    const unsigned v = device();
    token += hex[v & 15];
    token += hex[(v >> 4) & 15];
  }
  return token;
}

// The token of --token-file, or a new one written to JOBS_DIR/token (mode 0600).
std::string load_token(const ServeArgs& args, const fs::path& jobs_dir, std::string& told) {
  if (!args.token_file.empty()) {
    std::ifstream in(args.token_file);
    FT_CHECK(in, "serve", args.token_file, ": cannot read the token file");
    std::string token((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const auto first = token.find_first_not_of(" \t\r\n");
    const auto last = token.find_last_not_of(" \t\r\n");
    token = first == std::string::npos ? "" : token.substr(first, last - first + 1);
    FT_CHECK(token.size() >= 16, "serve", args.token_file,
             ": the token must be at least 16 characters");
    told = "token: read from " + args.token_file;
    return token;
  }
  const std::string token = random_token();
  const fs::path file = jobs_dir / "token";
  {
    std::ofstream out(file, std::ios::trunc);
    FT_CHECK(out, "serve", file.string(), ": cannot write the token");
    out << token << "\n";
  }
  chmod(file.c_str(), S_IRUSR | S_IWUSR);
  told = "token: " + token + " (also in " + file.string() + ")";
  return token;
}

void run_serve(const ServeArgs& args) {
  // Absolute: each job runs in its own folder (Note [Jobs as child processes]).
  const fs::path jobs_dir =
      fs::absolute(args.jobs_dir.empty() ? default_jobs_dir() : fs::path(args.jobs_dir));
  std::error_code ec;
  fs::create_directories(jobs_dir, ec);
  FT_CHECK(!ec, "serve", jobs_dir.string(), ": cannot create the jobs folder: ", ec.message());
  std::vector<fs::path> root_paths(args.roots.begin(), args.roots.end());
  if (root_paths.empty()) root_paths.push_back(fs::current_path());
  serve::Roots roots(root_paths);
  std::string token_line;
  serve::ServerOptions options;
  options.host = args.host;
  options.port = args.port;
  options.token = load_token(args, jobs_dir, token_line);
  options.max_body_bytes = static_cast<size_t>(args.max_body_kib) * 1024;

  serve::RunnerOptions r;
  r.jobs_dir = jobs_dir;
  r.ft_binary = fs::read_symlink("/proc/self/exe", ec);
  FT_CHECK(!ec, "serve", "cannot find this program's path (/proc/self/exe)");
  r.max_concurrent = args.max_concurrent;
  serve::JobRunner runner(r);
  serve::Server server(options, roots, runner);
  const int port = server.bind();

  signal(SIGPIPE, SIG_IGN);
  struct sigaction stop {};
  stop.sa_handler = on_stop_signal;
  sigaction(SIGINT, &stop, nullptr);
  sigaction(SIGTERM, &stop, nullptr);
  std::thread watcher([&server] {
    while (!g_stop) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    server.stop();
  });
  runner.start();
  std::cout << "ft serve: listening on http://" << args.host << ":" << port
            << "/ (dashboard; API under /api/v1)\n"
            << token_line << "\n"
            << "jobs: " << jobs_dir.string() << ", " << args.max_concurrent << " at a time\n";
  for (const fs::path& root : roots.folders()) std::cout << "root: " << root.string() << "\n";
  std::cout.flush();
  server.listen();
  g_stop = true;
  watcher.join();
  std::cout << "ft serve: stopping; running jobs save a checkpoint and become interrupted\n";
  std::cout.flush();
  runner.stop();
}

#else

void run_serve(const ServeArgs&) {
  throw Error("serve",
              "this ft was built without cpp-httplib and SQLite (./setup.sh installs them)");
}

#endif

}  // namespace

void add_serve_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "serve",
      "Run fine-tuning jobs behind an HTTP API (/api/v1) with a live dashboard; docs/serve.md");
  auto args = std::make_shared<ServeArgs>();
  cmd->add_option("--host", args->host, "Address to listen on")->capture_default_str();
  cmd->add_option("--port", args->port, "Port (0: any free one, printed)")
      ->check(CLI::Range(0, 65535))
      ->capture_default_str();
  cmd->add_option("--token-file", args->token_file,
                  "Read the bearer token from this file (default: a new token, printed and "
                  "written to JOBS_DIR/token)");
  cmd->add_option("--root", args->roots,
                  "A folder jobs may read models and data from (repeatable; default: the "
                  "current folder)")
      ->allow_extra_args(false);
  cmd->add_option("--jobs-dir", args->jobs_dir,
                  "The job store and the jobs' folders (default: ~/.local/share/ft/jobs)");
  cmd->add_option("--max-concurrent", args->max_concurrent, "Jobs that run at once")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  cmd->add_option("--max-body-kib", args->max_body_kib, "The largest request body, in KiB")
      ->check(CLI::Range(1, 65536))
      ->capture_default_str();
  cmd->callback([args] { run_serve(*args); });
}

}  // namespace ft::cli
