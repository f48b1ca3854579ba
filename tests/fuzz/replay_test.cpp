// The fuzz targets (fuzz/*.cpp) replayed on their committed seeds and on every input a
// fuzzer once crashed on (fuzz/regressions/<target>/), so that the normal test suite keeps
// each finding fixed without libFuzzer. Each target lets only ft::Error through quietly:
// any other exception fails here, and a crash ends the test binary.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

// The targets' sources, built as plain functions ft_fuzz_<name> (no FT_FUZZ_MAIN).
#include "fuzz/adapter_config.cpp"
#include "fuzz/config_json.cpp"
#include "fuzz/data_file.cpp"
#include "fuzz/gguf_file.cpp"
#include "fuzz/hostfile.cpp"
#include "fuzz/jsonl_record.cpp"
#include "fuzz/npz.cpp"
#include "fuzz/quant_recipe.cpp"
#include "fuzz/safetensors.cpp"
#include "fuzz/template.cpp"
#include "fuzz/tokenizer_encode.cpp"
#include "fuzz/tokenizer_json.cpp"
#include "fuzz/torch_pickle.cpp"
#include "fuzz/yaml_config.cpp"
#include "fuzz/zip.cpp"
#if FT_HAVE_SERVE  // job_settings.cpp is in ft_lib only where the job service is built
#include "fuzz/job_request.cpp"
#endif

namespace {

namespace fs = std::filesystem;

using Target = int (*)(const uint8_t*, size_t);

// Runs target on every file of fuzz/corpus/<name> and fuzz/regressions/<name>; returns
// how many it ran.
int replay(const std::string& name, Target target) {
  int count = 0;
  for (const char* set : {"corpus", "regressions"}) {
    const fs::path dir = fs::path(FT_SOURCE_DIR) / "fuzz" / set / name;
    if (!fs::is_directory(dir)) continue;
    for (const auto& entry : fs::directory_iterator(dir)) {
      std::ifstream in(entry.path(), std::ios::binary);
      std::ostringstream bytes;
      bytes << in.rdbuf();
      const std::string input = bytes.str();
      SCOPED_TRACE(entry.path().string());
      EXPECT_NO_THROW(target(reinterpret_cast<const uint8_t*>(input.data()), input.size()));
      ++count;
    }
  }
  return count;
}

// Every target of fuzz/, by name.
const std::pair<const char*, Target> kTargets[] = {
    {"adapter_config", ft_fuzz_adapter_config},
    {"config_json", ft_fuzz_config_json},
    {"data_file", ft_fuzz_data_file},
    {"gguf_file", ft_fuzz_gguf_file},
    {"hostfile", ft_fuzz_hostfile},
#if FT_HAVE_SERVE
    {"job_request", ft_fuzz_job_request},
#endif
    {"jsonl_record", ft_fuzz_jsonl_record},
    {"npz", ft_fuzz_npz},
    {"quant_recipe", ft_fuzz_quant_recipe},
    {"safetensors", ft_fuzz_safetensors},
    {"template", ft_fuzz_template},
    {"tokenizer_encode", ft_fuzz_tokenizer_encode},
    {"tokenizer_json", ft_fuzz_tokenizer_json},
    {"torch_pickle", ft_fuzz_torch_pickle},
    {"yaml_config", ft_fuzz_yaml_config},
    {"zip", ft_fuzz_zip},
};

}  // namespace

TEST(FuzzReplay, EveryTargetOnItsSeedsAndRegressions) {
  for (auto [name, target] : kTargets) EXPECT_GT(replay(name, target), 0) << name;
}

// A target added to fuzz/ but not to kTargets (and the #includes above) would never be
// replayed.
TEST(FuzzReplay, EveryTargetIsListed) {
  std::set<std::string> listed;
  for (auto [name, target] : kTargets) listed.insert(name);
#if !FT_HAVE_SERVE
  listed.insert("job_request");
#endif
  for (const auto& entry : fs::directory_iterator(fs::path(FT_SOURCE_DIR) / "fuzz")) {
    if (entry.path().extension() != ".cpp") continue;
    EXPECT_TRUE(listed.count(entry.path().stem().string())) << entry.path() << " is not replayed";
  }
}
