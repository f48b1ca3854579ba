// Every subcommand's --help describes every option and positional argument.
#include <gtest/gtest.h>

#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "tests/test_util.h"

namespace {

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// Subcommand names listed under "Subcommands:" in a help text.
std::vector<std::string> subcommands(const std::string& help) {
  std::vector<std::string> names;
  bool in_list = false;
  std::smatch m;
  for (const auto& line : lines_of(help)) {
    if (line == "Subcommands:") {
      in_list = true;
    } else if (in_list && std::regex_match(line, m, std::regex("  ([a-z-]+) .*"))) {
      names.push_back(m[1]);
    }
  }
  return names;
}

// Option and positional lines (two-space indent, a name) that have no description on
// their own line (after the name column) nor on the next, more indented, line.
std::vector<std::string> undescribed(const std::string& help) {
  std::vector<std::string> missing;
  auto lines = lines_of(help);
  bool in_entries = false;
  for (size_t i = 0; i < lines.size(); ++i) {
    const std::string& line = lines[i];
    if (line.empty() || line.back() == ':') {
      in_entries = line == "Options:" || line == "Positionals:" ||
                   (!line.empty() && line != "Subcommands:" && line[0] != ' ');
      continue;
    }
    if (!in_entries || !line.starts_with("  ") || line.starts_with("   ")) continue;
    // CLI11 puts the description at column 30, or on the next line when the name is long.
    bool same_line = line.size() > 30 && line[29] == ' ' && line[30] != ' ';
    bool next_line = i + 1 < lines.size() && lines[i + 1].starts_with(std::string(30, ' ')) &&
                     lines[i + 1].find_first_not_of(' ') != std::string::npos;
    if (!same_line && !next_line) missing.push_back(line);
  }
  return missing;
}

TEST(CliHelp, EverySubcommandDescribesEveryOption) {
  auto top = ft::testing::run_ft("--help");
  ASSERT_EQ(top.status, 0) << top.out;
  std::vector<std::string> commands = subcommands(top.out);
  ASSERT_GE(commands.size(), 11u) << top.out;
  for (size_t i = 0; i < commands.size(); ++i) {
    auto help = ft::testing::run_ft(commands[i] + " --help");
    ASSERT_EQ(help.status, 0) << commands[i] << ": " << help.out;
    for (const auto& line : undescribed(help.out))
      ADD_FAILURE() << "ft " << commands[i] << ": no description for '" << line << "'";
    // Nested subcommands (ft train quick) too.
    for (const auto& sub : subcommands(help.out)) commands.push_back(commands[i] + " " + sub);
  }
}

TEST(CliHelp, TheCheckerFindsAnOptionWithoutDescription) {
  std::string help =
      "Usage: ft x [OPTIONS]\n\nOptions:\n"
      "  -h,--help                   Print this help message and exit\n"
      "  --described INT=1           What it does\n"
      "  --long-name-that-wraps TEXT:{a,b}=a\n"
      "                              Described on the next line\n"
      "  --bare INT\n";
  auto missing = undescribed(help);
  ASSERT_EQ(missing.size(), 1u);
  EXPECT_EQ(missing[0], "  --bare INT");
}

}  // namespace

TEST(CliHelp, UnknownCommandsAndOptionsAreNamedWithTheNearestKnownOne) {
  auto command = ft::testing::run_ft("trian model.gguf records.jsonl");
  EXPECT_EQ(command.status, 2);
  EXPECT_EQ(command.out, "ft: error: unknown command 'trian' for ft (did you mean train?)\n");
  auto option = ft::testing::run_ft("eval model data --adaptor x");
  EXPECT_EQ(option.status, 2);
  EXPECT_EQ(option.out,
            "ft: error: unknown option '--adaptor' for ft eval (did you mean --adapter?)\n");
  auto far = ft::testing::run_ft("generate model --zzzzzzzzzz 3");
  EXPECT_EQ(far.status, 2);
  EXPECT_EQ(far.out, "ft: error: unknown option '--zzzzzzzzzz' for ft generate\n");
}
