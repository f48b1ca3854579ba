// ft::spawn's working folder: the child runs there, and a folder that does not exist is
// the child's exit status 127 with a line on its stderr.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "ft/core/process.h"

namespace fs = std::filesystem;

namespace {

int wait_for(int pid) {
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return ft::exit_code(status);
}

}  // namespace

TEST(Spawn, TheChildRunsInItsWorkingFolder) {
  const fs::path dir =
      fs::canonical(fs::temp_directory_path()) / ("ft_spawn_" + std::to_string(getpid()));
  fs::create_directories(dir);
  ft::SpawnOptions o;
  o.working_dir = dir.string();
  o.stdout_path = (dir / "out.txt").string();
  ASSERT_EQ(wait_for(ft::spawn({"pwd"}, o)), 0);
  std::ifstream in(dir / "out.txt");
  std::string line;
  std::getline(in, line);
  EXPECT_EQ(line, dir.string());

  o.working_dir = (dir / "missing").string();
  o.stderr_path = (dir / "err.txt").string();
  EXPECT_EQ(wait_for(ft::spawn({"pwd"}, o)), 127);
  EXPECT_EQ(ft::last_line(dir / "err.txt"), "ft: cannot enter the working folder");
  fs::remove_all(dir);
}
