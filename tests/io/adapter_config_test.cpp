// adapter_config.json's settings: the inputs the adapter_config fuzz target once crashed
// on (fuzz/regressions/adapter_config/), each refused with the file and the field.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "ft/core/error.h"
#include "ft/io/adapters.h"
#include "ft/models/registry.h"

namespace fs = std::filesystem;

namespace {

const fs::path kRegressions = fs::path(FT_SOURCE_DIR) / "fuzz/regressions/adapter_config";

// A fresh folder holding weights (copied from a golden adapter) and the regression's config.
class AdapterFolder {
 public:
  AdapterFolder(const std::string& golden, const char* weights, const std::string& regression) {
    dir_ = fs::temp_directory_path() /
           ("ft_adapter_config_" + std::to_string(reinterpret_cast<uintptr_t>(this)));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    if (!golden.empty())
      fs::copy_file(fs::path(FT_TEST_DATA) / "adapters" / golden / weights, dir_ / weights);
    fs::copy_file(kRegressions / regression, dir_ / "adapter_config.json");
  }
  ~AdapterFolder() { fs::remove_all(dir_); }
  const fs::path& dir() const { return dir_; }

  std::string load_error() const {
    try {
      ft::io::load_adapter(dir_);
    } catch (const ft::Error& e) {
      return e.what();
    }
    return "";
  }

 private:
  fs::path dir_;
};

}  // namespace

// A list, not an object: nlohmann's value() threw its own exception.
TEST(AdapterConfig, ListIsRefused) {
  AdapterFolder f("mlx_lora", "adapters.safetensors", "list.json");
  EXPECT_EQ(f.load_error(),
            "[adapter] " + (f.dir() / "adapter_config.json").string() + ": not a JSON object");
}

// lora_dropout as a string: nlohmann's value() threw its own exception.
TEST(AdapterConfig, DropoutOfTheWrongTypeIsRefused) {
  AdapterFolder f("peft_lora", "adapter_model.safetensors", "dropout_string.json");
  EXPECT_EQ(f.load_error(), "[adapter] " + (f.dir() / "adapter_config.json").string() +
                                ": 'lora_dropout' must be a number, got \"0.1\"");
}

// r of 1e20 was converted to int (undefined behaviour).
TEST(AdapterConfig, RankPastIntIsRefused) {
  AdapterFolder f("peft_lora", "adapter_model.safetensors", "rank_1e20.json");
  EXPECT_EQ(f.load_error(), "[adapter] " + (f.dir() / "adapter_config.json").string() +
                                ": 'r' must be an integer within int's range, got 1e+20");
}

// r of 0 on stacked expert parameters divided their rows by it (SIGFPE).
TEST(AdapterConfig, RankZeroOnStackedExpertsIsRefused) {
  AdapterFolder f("", "", "rank_0_experts.json");
  ft::models::Config c;
  c.model_type = "mixtral";
  c.vocab_size = 32;
  c.hidden_size = 16;
  c.intermediate_size = 24;
  c.num_hidden_layers = 1;
  c.num_attention_heads = 2;
  c.num_key_value_heads = 1;
  c.num_experts = 2;
  c.num_experts_per_tok = 1;
  ft::Rng rng(0);
  auto model = ft::models::build_model(c, rng);
  ft::nn::LoraConfig lora;
  lora.rank = 2;
  lora.target_modules = {"q_proj", "gate_up_proj", "down_proj"};
  ft::nn::apply_lora(*model, lora);
  const fs::path saved = f.dir() / "saved";
  ft::io::save_peft_adapter(*model, lora, "mixtral", saved);
  fs::copy_file(kRegressions / "rank_0_experts.json", saved / "adapter_config.json",
                fs::copy_options::overwrite_existing);
  try {
    ft::io::load_adapter(saved, model.get());
    ADD_FAILURE() << "loaded";
  } catch (const ft::Error& e) {
    EXPECT_EQ(std::string(e.what()), "[adapter] " + (saved / "adapter_config.json").string() +
                                         ": 'r' must be between 1 and 65536, got 0");
  }
}
