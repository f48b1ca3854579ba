// ft's LoRA adapters on the further families, saved in PEFT's layout, against the committed
// exports that tests/golden/check_adapters.py --verify loaded with PEFT: fused projections
// (Phi-3's qkv_proj and gate_up_proj; GPT-2's Conv1D c_attn, c_proj, c_fc, written with
// fan_in_fan_out), Mixtral's stacked experts (target_parameters), LFM2's in_proj, Gemma 2,
// Phi-2, and a multimodal Gemma 3 folder (its text model's modules one level down). With
// FT_WRITE_ADAPTER_FIXTURES=1 this writes tests/golden/adapters/ft_export_<fixture>/peft and
// ft_export_<fixture>_expected.safetensors (ids (2, 12) int32, logits (2, 12, vocab) float32);
// otherwise a fresh export must be byte-identical to the committed one, and the committed export,
// applied by ft, must give the committed logits.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include <mlx/ops.h>

#include "ft/io/adapters.h"
#include "ft/models/registry.h"
#include "ft/nn/lora.h"
#include "tests/adapters/export_util.h"
#include "tests/test_util.h"

namespace ft {
namespace {

namespace fs = std::filesystem;
using testing::read_bytes;
using testing::relative_error;
const fs::path kGolden = FT_TEST_DATA;
const fs::path kAdapters = kGolden / "adapters";
const fs::path kModels = kGolden / "models";

struct FamilyCase {
  const char* fixture;  // tests/golden/models/<fixture>
  std::vector<std::string> targets;
  int adapted;                        // modules and stacked parameters the targets select
  const char* ids_fixture = nullptr;  // whose <name>_expected.safetensors has the ids
};

class FamilyExport : public ::testing::TestWithParam<FamilyCase> {};

TEST_P(FamilyExport, MatchesTheCommittedExportThatPeftLoaded) {
  // The committed files were written from the CPU's random numbers, byte for byte.
  ft::testing::OnCpu cpu;
  const FamilyCase& c = GetParam();
  const std::string fixture = c.fixture;
  const fs::path model_dir = kModels / fixture;
  nn::LoraConfig config;
  config.rank = 4;
  config.alpha = 8;
  config.target_modules = c.targets;
  config.seed = 5;

  // The family's golden ids (2, 12).
  const std::string ids_fixture = c.ids_fixture ? c.ids_fixture : fixture;
  const mx::array ids =
      ParamMap::load_safetensors((kModels / (ids_fixture + "_expected.safetensors")).string())
          .at("ids");
  // PEFT's module names for the checkpoint's transformers class (a multimodal one holds
  // the text model one level down).
  const io::ModulePrefix prefix = models::peft_module_prefix(io::read_config(model_dir));
  auto model = models::load_model(model_dir);
  model->eval();
  const mx::array base_logits = (*model)(ids);
  const auto paths = nn::apply_lora(*model, config);
  EXPECT_EQ(static_cast<int>(paths.size()), c.adapted);
  model->update(testing::random_adapter_values(io::adapter_parameters(*model), 1234));
  mx::array logits = (*model)(ids);
  logits.eval();

  const bool write = std::getenv("FT_WRITE_ADAPTER_FIXTURES") != nullptr;
  const std::string base = "ft_export_" + fixture;
  const fs::path out = write ? kAdapters / base : fs::path(::testing::TempDir()) / base;
  io::save_peft_adapter(*model, config, "tests/golden/models/" + fixture, out / "peft", prefix);
  if (write) {
    ParamMap{{"ids", ids}, {"logits", logits}}.save_safetensors(
        (kAdapters / (base + "_expected.safetensors")).string());
    GTEST_SKIP() << "wrote " << out;
  }
  for (const char* file : {"peft/adapter_model.safetensors", "peft/adapter_config.json"})
    EXPECT_EQ(read_bytes(out / file), read_bytes(kAdapters / base / file))
        << file << " differs from the committed export: rerun the exporter and "
        << "check_adapters.py --verify (tests/golden/check_adapters.py says how)";

  // The logits PEFT was checked against are the ones ft computes ...
  const ParamMap committed =
      ParamMap::load_safetensors((kAdapters / (base + "_expected.safetensors")).string());
  EXPECT_TRUE(mx::array_equal(committed.at("ids"), ids).item<bool>());
  EXPECT_LT(relative_error(logits, committed.at("logits")), 1e-5f);
  // ... and the adapter is large enough that dropping any part of it would show.
  EXPECT_GT(relative_error(base_logits, committed.at("logits")), 1e-2f);
  // ... and ft reads the committed export back onto a fresh model.
  auto reloaded = models::load_model(model_dir);
  reloaded->eval();
  EXPECT_EQ(io::apply_adapter(*reloaded, kAdapters / base / "peft", std::nullopt, prefix).size(),
            paths.size());
  EXPECT_LT(relative_error((*reloaded)(ids), committed.at("logits")), 1e-5f);
}

// The targets that exercise each family's own layout: fused q/k/v and gate/up projections,
// Conv1D weights stored (in, out), stacked experts, the convolution block's in_proj.
INSTANTIATE_TEST_SUITE_P(
    Families, FamilyExport,
    ::testing::Values(
        FamilyCase{"phi3", {"qkv_proj", "o_proj", "gate_up_proj", "down_proj"}, 8},
        FamilyCase{"phi3_longrope", {"qkv_proj", "o_proj", "gate_up_proj", "down_proj"}, 8},
        // c_proj is both attn.c_proj and mlp.c_proj.
        FamilyCase{"gpt2", {"c_attn", "c_proj", "c_fc"}, 8},
        // gate_up_proj and down_proj are the experts' stacked parameters.
        FamilyCase{"mixtral_fused", {"q_proj", "v_proj", "gate_up_proj", "down_proj"}, 8},
        // Conv layers 0 and 2 have in_proj and out_proj, attention layers 1 and 3 q_proj and
        // out_proj; every layer has w1.
        FamilyCase{"lfm2", {"in_proj", "out_proj", "q_proj", "w1"}, 12},
        FamilyCase{"gemma2", {"q_proj", "v_proj", "gate_proj"}, 6},
        FamilyCase{"phi", {"q_proj", "dense", "fc1", "fc2"}, 8},
        // Gemma3ForConditionalGeneration: PEFT names the text model's modules
        // model.language_model.layers.N...; gemma3_text's weights and ids.
        FamilyCase{"gemma3", {"q_proj", "v_proj", "gate_proj"}, 9, "gemma3_text"}),
    [](const auto& info) { return std::string(info.param.fixture); });

}  // namespace
}  // namespace ft
