// Child processes: started in a process group of their own, with output to files or
// inherited, and a signal the kernel sends them if the thread that started them ends (the
// server or launcher dying with them). Used by ft serve's jobs and ft launch's ranks.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace ft {

struct SpawnOptions {
  std::vector<std::string> env;  // NAME=VALUE added to this process's environment
  std::string stdout_path;       // appended to; empty: this process's stdout
  std::string stderr_path;       // appended to; empty: this process's stderr; "-": stdout's
  int death_signal = 0;          // sent when the starting thread ends (PR_SET_PDEATHSIG); 0: none
  std::string working_dir;       // the child's current folder; empty: this process's
};

// Starts args[0] (a path, or a name looked up in PATH) with args, stdin empty. Returns its
// pid, which is also its process group. Throws ft::Error when it cannot fork; a program
// that cannot be run exits 127 with a line on its stderr.
int spawn(const std::vector<std::string>& args, const SpawnOptions& options = {});

// The exit code of a waitpid status: its exit status, or 128 + the signal that ended it.
int exit_code(int wait_status);

// The last non-empty line of a file a child wrote (its error, as ft prints it), at most
// 1000 bytes of it; empty for a missing or blank file.
std::string last_line(const std::filesystem::path& file);

}  // namespace ft
