// YAML options files (ft train --config): what they read as, and the one-line errors and
// limits that keep a hostile file from nesting, expanding aliases or growing without end.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "ft/io/options_file.h"
#include "io_test_util.h"

namespace fs = std::filesystem;
using ft::io::kMaxOptionsFileBytes;
using ft::io::parse_options_yaml;
using ft::testing::error_of;

namespace {

// The entries as "key=value|value;" for comparing in one line.
std::string entries_of(const std::string& text) {
  std::string out;
  for (const auto& entry : parse_options_yaml(text, "c.yaml")) {
    out += entry.key + "=";
    for (size_t i = 0; i < entry.values.size(); ++i) out += (i ? "|" : "") + entry.values[i];
    out += ";";
  }
  return out;
}

std::string parse_error(const std::string& text) {
  return error_of([&] { parse_options_yaml(text, "c.yaml"); });
}

std::string repeated(const std::string& piece, size_t times) {
  std::string out;
  for (size_t i = 0; i < times; ++i) out += piece;
  return out;
}

const std::string kNotAMapping = "[config] c.yaml: expected a mapping of option names to values";
const std::string kLimit =
    ": the keys and values, aliases expanded, pass the limit of 262144 bytes";

}  // namespace

TEST(OptionsFile, ScalarsListsAndAliasesReadAsStrings) {
  EXPECT_EQ(entries_of("model: m\n"
                       "lora-rank: 4   # a comment\n"
                       "target_modules: [q_proj, 'v_proj', ~, '']\n"
                       "layers:\n  - 1\n  - 2\n"
                       "empty: []\n"
                       "lr: !!float 1e-4\n"
                       "text: |\n  two\n  lines\n"
                       "a: &name q\n"
                       "b: *name\n"
                       "c: &list [x, *name]\n"
                       "d: *list\n"
                       "*name : again\n"
                       "model: twice\n"),
            "model=m;lora-rank=4;target_modules=q_proj|v_proj|null|;layers=1|2;empty=;"
            "lr=1e-4;text=two\nlines\n;a=q;b=q;c=x|q;d=x|q;q=again;model=twice;");
  EXPECT_EQ(entries_of("{model: m, data: [d]}"), "model=m;data=d;");
  // Only the first document is read, as yaml-cpp's Load reads.
  EXPECT_EQ(entries_of("a: 1\n---\nb: [unclosed\n"), "a=1;");
}

TEST(OptionsFile, ErrorsNameTheFileAndTheKey) {
  for (const char* text : {"", "# only a comment\n", "just text", "- a\n- b\n", "[a, b]", "~"})
    EXPECT_EQ(parse_error(text), kNotAMapping) << text;
  const std::pair<const char*, const char*> needs_value[] = {
      {"lora_rank:\n", "lora_rank"},
      {"lora_rank: ~\n", "lora_rank"},
      {"lora_rank: {a: 1}\n", "lora_rank"},
      {"lora_rank:\n  a: 1\n", "lora_rank"},
      {"lora_rank: [1, [2]]\n", "lora_rank"},
      {"lora_rank: [{a: 1}]\n", "lora_rank"},
      {"a: &m [1]\nb: [*m]\n", "b"},
      // An alias of the mapping that holds it (YAML::Load builds a node containing itself).
      {"&root {lora_rank: *root}", "lora_rank"}};
  for (auto [text, key] : needs_value) {
    EXPECT_EQ(parse_error(text),
              "[config] c.yaml: key '" + std::string(key) + "' needs a value or a list")
        << text;
  }
  const std::string keys = ": keys must be option names, not lists, mappings or null";
  EXPECT_EQ(parse_error("a: 1\n[b]: 2\n"), "[config] c.yaml: line 2" + keys);
  EXPECT_EQ(parse_error("{b: 1}: 2\n"), "[config] c.yaml: line 1" + keys);
  EXPECT_EQ(parse_error("a: 1\n~: 2\n"), "[config] c.yaml: line 2" + keys);
  EXPECT_EQ(parse_error("a: 1\n: 2\n"), "[config] c.yaml: line 2" + keys);
  EXPECT_EQ(parse_error("a: &l [1]\n*l : 2\n"), "[config] c.yaml: line 2" + keys);
  EXPECT_EQ(parse_error("model: [unclosed\n"),
            "[config] c.yaml: yaml-cpp: error at line 2, column 1: end of sequence flow not found");
  EXPECT_EQ(parse_error("a: *undefined\n"),
            "[config] c.yaml: yaml-cpp: error at line 1, column 4: the referenced anchor is not "
            "defined");
  // A long key is shortened in the message.
  EXPECT_EQ(parse_error(std::string(1000, 'k') + ": {}\n"),
            "[config] c.yaml: key '" + std::string(57, 'k') + "...' needs a value or a list");
}

TEST(OptionsFile, LargerThanTheLimitIsRefused) {
  const std::string prefix = "model: ";
  const std::string at_limit = prefix + std::string(kMaxOptionsFileBytes - prefix.size(), 'm');
  EXPECT_EQ(entries_of(at_limit).size(), at_limit.size());  // "model=mm...m;"
  EXPECT_EQ(parse_error(at_limit + "m"),
            "[config] c.yaml: larger than 262144 bytes, the limit for an options file");
}

// Nesting is refused where it has no place, before yaml-cpp recurses into it (its own guard
// would stop at about 500 levels with "bad file"). An unclosed flow collection at the top
// reads as a key until its end.
TEST(OptionsFile, DeepNestingIsRefusedWhereItOpens) {
  const std::string key_error =
      "[config] c.yaml: line 1: keys must be option names, not lists, mappings or null";
  EXPECT_EQ(parse_error(repeated("[", 100000)), key_error);
  EXPECT_EQ(parse_error(repeated("{a: ", 60000)), key_error);
  EXPECT_EQ(parse_error(repeated("[", 100000) + repeated("]", 100000)), kNotAMapping);
  EXPECT_EQ(parse_error(repeated("- ", 100000) + "x"), kNotAMapping);
  const std::string value_error = "[config] c.yaml: key 'a' needs a value or a list";
  EXPECT_EQ(parse_error("a: " + repeated("[", 100000)), value_error);
  EXPECT_EQ(parse_error("a: " + repeated("[", 100000) + repeated("]", 100000)), value_error);
  EXPECT_EQ(parse_error("a: " + repeated("{a: ", 60000)), value_error);
  std::string block;  // a:\n a:\n  a:\n ... indented one more space each line
  for (int depth = 0; depth < 700; ++depth) block += std::string(depth, ' ') + "a:\n";
  EXPECT_EQ(parse_error(block), value_error);
}

// A small file whose aliases would expand to gigabytes is refused once what they add up to
// passes the file's own limit.
TEST(OptionsFile, AliasExpansionIsBounded) {
  // A long scalar, repeated by aliases in a list.
  const std::string scalar = "a: &x " + std::string(100000, 'x') + "\nb: [*x, *x, *x]\n";
  EXPECT_EQ(parse_error(scalar), "[config] c.yaml: line 2" + kLimit);
  // Empty strings count one byte each: 20,000 of them pass the limit at the 13th alias.
  std::string empties = "a: &l [" + repeated("'',", 20000) + "]\n";
  for (int i = 0; i < 14; ++i) empties += std::string(1, static_cast<char>('b' + i)) + ": *l\n";
  EXPECT_EQ(parse_error(empties), "[config] c.yaml: line 14" + kLimit);
  // A long key (explicit: a plain one ends at 1024 characters), repeated by aliases of it.
  const std::string key = "? &k " + std::string(100000, 'k') + "\n: 1\n*k : 2\n*k : 3\n";
  EXPECT_EQ(parse_error(key), "[config] c.yaml: line 4" + kLimit);
  // The classic shape, lists of aliases of lists, stops at the second level.
  EXPECT_EQ(parse_error("a: &a [lol, lol]\nb: &b [*a, *a]\nc: &c [*b, *b]\n"),
            "[config] c.yaml: key 'b' needs a value or a list");
}

TEST(OptionsFile, ReadFromAFile) {
  ft::testing::TempDir dir;
  const fs::path file = dir.path() / "train.yaml";
  ft::testing::write_bytes(file, "model: m\ntarget_modules: [q, v]\n");
  auto entries = ft::io::read_options_yaml(file);
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries[1].key, "target_modules");
  EXPECT_EQ(entries[1].values, (std::vector<std::string>{"q", "v"}));

  EXPECT_EQ(error_of([&] { ft::io::read_options_yaml(dir.path() / "missing.yaml"); }),
            "[config] " + (dir.path() / "missing.yaml").string() + ": no such file");
  EXPECT_EQ(error_of([&] { ft::io::read_options_yaml(dir.path()); }),
            "[config] " + dir.path().string() + ": is a folder, not a file");
  // A device that never ends is read only one byte past the limit.
  if (fs::exists("/dev/zero")) {
    EXPECT_EQ(error_of([&] { ft::io::read_options_yaml("/dev/zero"); }),
              "[config] /dev/zero: larger than 262144 bytes, the limit for an options file");
  }
}
