// adapter_config.json through io::load_adapter and io::apply_adapter: the fuzzed config
// goes beside fixed weights in a folder under /dev/shm (one file written per input), and
// the adapter is applied to a model of the weights' shapes. The config picks the weights
// it describes: PEFT's (peft_type present; LoRA, DoRA, or stacked expert parameters when
// target_parameters is given) or mlx-lm's (LoRA or DoRA), so the checks of rank, scale,
// dropout, targets and layers are reached with tensors that fit.
#include <nlohmann/json.hpp>

#include "ft/io/adapters.h"
#include "ft/models/registry.h"
#include "fuzz/fuzz_target.h"

namespace {

namespace fs = std::filesystem;

// The folders, made once per process: the repository's golden adapters of
// tests/golden/models/llama, and a PEFT adapter on a small Mixtral's stacked experts.
struct Folders {
  fs::path root, peft_lora, peft_dora, peft_experts, mlx_lora, mlx_dora;
};

ft::models::Config llama_config() {
  static const ft::models::Config c = ft::models::from_hf_config(
      ft::io::read_config(fs::path(FT_SOURCE_DIR) / "tests/golden/models/llama"));
  return c;
}

ft::models::Config mixtral_config() {
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
  return c;
}

const Folders& folders() {
  static const Folders f = [] {
    Folders f;
    const fs::path shm = fs::exists("/dev/shm") ? "/dev/shm" : fs::temp_directory_path();
    f.root = shm / ("ft_fuzz_" + std::to_string(getpid()) + "_adapters");
    const fs::path golden = fs::path(FT_SOURCE_DIR) / "tests/golden/adapters";
    auto copy = [&](const char* name, const char* weights) {
      const fs::path dir = f.root / name;
      fs::create_directories(dir);
      fs::copy_file(golden / name / weights, dir / weights, fs::copy_options::overwrite_existing);
      return dir;
    };
    f.peft_lora = copy("peft_lora", "adapter_model.safetensors");
    f.peft_dora = copy("peft_dora", "adapter_model.safetensors");
    f.mlx_lora = copy("mlx_lora", "adapters.safetensors");
    f.mlx_dora = copy("mlx_dora", "adapters.safetensors");
    ft::Rng rng(0);
    auto model = ft::models::build_model(mixtral_config(), rng);
    ft::nn::LoraConfig lora;
    lora.rank = 2;
    lora.target_modules = {"q_proj", "gate_up_proj", "down_proj"};
    ft::nn::apply_lora(*model, lora);
    f.peft_experts = f.root / "peft_experts";
    ft::io::save_peft_adapter(*model, lora, "mixtral", f.peft_experts);
    return f;
  }();
  return f;
}

bool is_true(const nlohmann::json& j, const char* key) {
  return j.contains(key) && j[key].is_boolean() && j[key].get<bool>();
}

}  // namespace

FT_FUZZ_TARGET(adapter_config) {
  const auto text = ft::fuzz::bytes(data, size);
  const nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  const Folders& f = folders();
  fs::path dir = f.mlx_lora;
  bool experts = false;
  if (j.is_object() && j.contains("peft_type")) {
    experts = j.contains("target_parameters") && !j["target_parameters"].is_null();
    dir = experts ? f.peft_experts : is_true(j, "use_dora") ? f.peft_dora : f.peft_lora;
  } else if (j.is_object() && j.contains("fine_tune_type") && j["fine_tune_type"] == "dora") {
    dir = f.mlx_dora;
  }
  std::ofstream(dir / "adapter_config.json", std::ios::binary | std::ios::trunc)
      .write(text.data(), static_cast<std::streamsize>(text.size()));
  // Read alone, then read against the model (which orders stacked parameters) and
  // applied. A config refused when read alone is refused the same way against the model,
  // but for stacked parameters, whose order only the model gives: building the model is
  // most of the cost, so it is built only for the others.
  bool read = false;
  ft::fuzz::refusing([&] {
    ft::io::load_adapter(dir);
    read = true;
  });
  if (!read && !experts) return 0;
  return ft::fuzz::refusing([&] {
    ft::Rng rng(0);
    auto model = ft::models::build_model(experts ? mixtral_config() : llama_config(), rng);
    ft::io::apply_adapter(*model, dir);
  });
}
