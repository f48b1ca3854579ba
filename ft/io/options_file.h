// Options files: the YAML configs of `ft train --config FILE.yaml` and `ft validate FILE.yaml`,
// a mapping of option names to a value or a list of values. Read here as strings; the command
// maps each key onto its option (apps/ft/train.cpp).
#pragma once

#include <cstddef>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace ft::io {

// Far above what a config needs (a few hundred bytes). yaml-cpp holds about 250 bytes per
// token of a flow collection ([a, b, ...]) while it scans, so this also bounds its memory
// (about 65 MB at the limit). The keys and values read, aliases expanded, are held to the
// same size.
inline constexpr size_t kMaxOptionsFileBytes = 256 * 1024;

// One key of the mapping and its value: one string for a scalar, one per item for a list
// (possibly none). A null item reads "null", as yaml-cpp gives it.
struct OptionEntry {
  std::string key;
  std::vector<std::string> values;
};

// The entries in file order (a repeated key appears twice). Throws ft::Error("config", ...)
// naming the file for a missing or unreadable file, one past kMaxOptionsFileBytes, a YAML
// syntax error, a document that is not a mapping, a key that is not a scalar, a value that
// is neither a scalar nor a list of scalars (naming the key; nothing nested deeper is
// parsed), or keys and values past kMaxOptionsFileBytes once aliases are expanded. Only the
// first document of the file is read.
std::vector<OptionEntry> read_options_yaml(const std::filesystem::path& file);

// The same for text already in memory; name_for_errors stands for the file in messages.
std::vector<OptionEntry> parse_options_yaml(std::string_view text,
                                            const std::string& name_for_errors);

}  // namespace ft::io
