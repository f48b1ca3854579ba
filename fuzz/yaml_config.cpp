// A YAML options file (`ft train --config FILE.yaml`) through io::parse_options_yaml:
// yaml-cpp's parser (Debian's build, not instrumented: only ft's side of it guides the
// fuzzer) and the reader of its events, which keeps a mapping of names to scalars or lists
// of scalars and counts what aliases expand to.
#include "ft/io/options_file.h"
#include "fuzz/fuzz_target.h"

FT_FUZZ_TARGET(yaml_config) {
  return ft::fuzz::refusing([&] {
    size_t bytes = 0;
    for (const auto& entry : ft::io::parse_options_yaml(ft::fuzz::bytes(data, size), "fuzz.yaml")) {
      bytes += entry.key.size() + 1;
      for (const auto& value : entry.values) bytes += value.size() + 1;
    }
    FT_ASSERT(bytes <= ft::io::kMaxOptionsFileBytes);
  });
}
