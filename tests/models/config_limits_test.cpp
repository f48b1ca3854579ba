// Note [Config limits] (ft/models/config.cpp): the config.json inputs the config_json fuzz
// target once crashed on, or that built slowly or past its memory limit, each refused
// with the file and the field. The inputs are fuzz/regressions/config_json/.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "ft/core/error.h"
#include "ft/models/registry.h"

namespace fs = std::filesystem;

namespace {

std::string read_error(const std::string& regression) {
  std::ifstream in(fs::path(FT_SOURCE_DIR) / "fuzz/regressions/config_json" / regression);
  try {
    ft::models::from_hf_config(ft::io::ModelConfig(nlohmann::json::parse(in), "config.json"));
  } catch (const ft::Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

// A double past int's range was converted to int (undefined behaviour).
TEST(ConfigLimits, Llama3OriginalContextPastIntIsRefused) {
  EXPECT_EQ(read_error("llama3_original_max_position_1e20.json"),
            "[config.json] rope_scaling.original_max_position_embeddings must be between 1 "
            "and 1e9, got 1e+20");
}

// Scaled rotary embeddings compute head_dim / 2 periods per layer when built: 2^23 of
// them (32 MB) on each of 256 layers or more ran out of memory.
TEST(ConfigLimits, HeadDimPastTheLimitIsRefused) {
  EXPECT_EQ(read_error("llama3_head_dim_2e24.json"),
            "[config.json] [config] head_dim 16777216 is out of range (at most 4096, and "
            "head_dim * num_attention_heads at most 16777216)");
}

// 4,096 layers took 20 s and 1 GB to build under the fuzz build's sanitizers (1,024
// layers 5 to 25 s).
TEST(ConfigLimits, LayersPastTheLimitAreRefused) {
  EXPECT_EQ(read_error("layers_4096.json"),
            "[config.json] field 'num_hidden_layers' must be between 1 and 256, got 4096");
}

// The experts' stacked weights of 2^72 elements overflowed MLX's element count silently.
TEST(ConfigLimits, WeightsPastTwoToThe48ElementsAreRefused) {
  EXPECT_EQ(read_error("experts_2e72_elements.json"),
            "[config.json] [config] the sizes make a weight of 9.44473e+21 elements, past the "
            "limit of 2^48 (hidden_size 16777216, intermediate_size 16777216, vocab_size "
            "16777216, num_local_experts 16777216)");
}
