#include "ft/core/process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>

#include "ft/core/error.h"

namespace ft {

int spawn(const std::vector<std::string>& args, const SpawnOptions& options) {
  FT_CHECK(!args.empty(), "process", "no program to run");
  // Everything the child needs is made before fork: after it only system calls run.
  std::vector<char*> argv;
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<std::string> env_strings;
  for (char** e = environ; *e; ++e) env_strings.emplace_back(*e);
  env_strings.insert(env_strings.end(), options.env.begin(), options.env.end());
  std::vector<char*> envp;
  for (const std::string& e : env_strings) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  const std::string out_path = options.stdout_path, err_path = options.stderr_path;
  const std::string working_dir = options.working_dir;
  const int death_signal = options.death_signal;
  const pid_t parent = getpid();
  const pid_t pid = fork();
  FT_CHECK(pid >= 0, "process", "cannot start ", args[0]);
  if (pid == 0) {
    setpgid(0, 0);
    if (death_signal != 0) {
      prctl(PR_SET_PDEATHSIG, death_signal);
      if (getppid() != parent) _exit(128 + death_signal);  // the parent died before prctl
    }
    const int in = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (in < 0 || dup2(in, 0) < 0) _exit(127);
    if (!out_path.empty()) {
      const int out = open(out_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
      if (out < 0 || dup2(out, 1) < 0) _exit(127);
    }
    if (err_path == "-") {
      if (dup2(1, 2) < 0) _exit(127);
    } else if (!err_path.empty()) {
      const int err = open(err_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
      if (err < 0 || dup2(err, 2) < 0) _exit(127);
    }
    if (!working_dir.empty() && chdir(working_dir.c_str()) != 0) {
      const char message[] = "ft: cannot enter the working folder\n";
      (void)!write(2, message, sizeof message - 1);
      _exit(127);
    }
    environ = envp.data();
    execvp(argv[0], argv.data());
    const char message[] = "ft: cannot run the program\n";
    (void)!write(2, message, sizeof message - 1);
    _exit(127);
  }
  setpgid(pid, pid);  // also here, so a signal to the group cannot precede the child's call
  return pid;
}

std::string last_line(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  std::string line, last;
  while (std::getline(in, line))
    if (line.find_first_not_of(" \t\r") != std::string::npos) last = line;
  if (last.size() > 1000) last = last.substr(0, 1000) + "...";
  return last;
}

int exit_code(int wait_status) {
  if (WIFEXITED(wait_status)) return WEXITSTATUS(wait_status);
  if (WIFSIGNALED(wait_status)) return 128 + WTERMSIG(wait_status);
  return -1;
}

}  // namespace ft
