// Adapters against PEFT and mlx-lm: fixtures those tools wrote (with the logits they
// computed) load in ft with the same logits; ft's exports are byte-identical to the
// committed ones that tests/golden/check_adapters.py --verify loaded with PEFT and mlx-lm;
// a fused folder gives the logits of base + adapter.
#include <gtest/gtest.h>

#include <sys/wait.h>  // defines: WIFEXITED, WEXITSTATUS
#include <unistd.h>    // defines: getpid

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include <mlx/ops.h>

#include "ft/io/adapters.h"
#include "ft/io/model_folder.h"
#include "ft/models/fuse.h"
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
const fs::path kModel = kGolden / "models" / "llama";

ParamMap expected(const std::string& name) {
  return ParamMap::load_safetensors((kAdapters / (name + "_expected.safetensors")).string());
}

mx::array logits_of(models::CausalLM& model, const ParamMap& want) {
  model.eval();
  auto logits = model(want.at("ids"));
  logits.eval();
  return logits;
}

fs::path temp_dir(const std::string& name) {
  fs::path dir = fs::path(::testing::TempDir()) / ("ft_adapters_" + name);
  fs::remove_all(dir);
  return dir;
}

class ForeignAdapter : public ::testing::TestWithParam<const char*> {};

TEST_P(ForeignAdapter, GivesTheLogitsOfTheToolThatWroteIt) {
  const std::string name = GetParam();
  const ParamMap want = expected(name);
  auto model = models::load_model(kModel);
  const float base_error = relative_error(logits_of(*model, want), want.at("logits"));
  auto paths = io::apply_adapter(*model, kAdapters / name);
  EXPECT_FALSE(paths.empty());
  EXPECT_LT(relative_error(logits_of(*model, want), want.at("logits")), 1e-4f) << name;
  // The adapter's values are large enough that ignoring any part of them shows.
  EXPECT_GT(base_error, 1e-2f) << name;
  // Only the adapter trains.
  EXPECT_EQ(model->trainable_parameters().names(), io::adapter_parameters(*model).names());
}

INSTANTIATE_TEST_SUITE_P(Fixtures, ForeignAdapter,
                         ::testing::Values("peft_lora", "peft_dora", "mlx_lora", "mlx_dora"));

TEST(LoadAdapter, ReadsEachLayoutsConfig) {
  auto peft = io::load_adapter(kAdapters / "peft_dora");
  EXPECT_EQ(peft.format, io::AdapterFormat::peft);
  EXPECT_EQ(peft.config.rank, 2);
  EXPECT_FLOAT_EQ(peft.config.alpha, 3.0f);
  EXPECT_TRUE(peft.config.dora);
  EXPECT_TRUE(peft.config.rslora);
  // layers_to_transform [1] with k_proj, o_proj, gate_proj.
  EXPECT_EQ(peft.modules, (std::vector<std::string>{"model.layers.1.mlp.gate_proj",
                                                    "model.layers.1.self_attn.k_proj",
                                                    "model.layers.1.self_attn.o_proj"}));
  EXPECT_EQ(peft.weights.at("model.layers.1.self_attn.k_proj.lora_A").shape(), (mx::Shape{2, 32}));

  auto mlx = io::load_adapter(kAdapters / "mlx_lora");
  EXPECT_EQ(mlx.format, io::AdapterFormat::mlx_lm);
  EXPECT_EQ(mlx.config.rank, 4);
  EXPECT_FLOAT_EQ(mlx.config.alpha, 1.5f * 4);  // mlx-lm stores scale = alpha / r
  EXPECT_FALSE(mlx.config.dora);
  EXPECT_EQ(mlx.modules.size(), 4u);  // q_proj and up_proj in both layers
  // mlx-lm's lora_a is (in, r): ft holds its transpose.
  EXPECT_EQ(mlx.weights.at("model.layers.0.mlp.up_proj.lora_A").shape(), (mx::Shape{4, 32}));
  EXPECT_EQ(mlx.weights.at("model.layers.0.mlp.up_proj.lora_B").shape(), (mx::Shape{48, 4}));
}

// Loading an adapter and saving it in either layout gives back the same model.
TEST(SaveAdapter, RoundTripsThroughBothLayouts) {
  for (const char* name : {"peft_lora", "peft_dora", "mlx_dora"}) {
    const ParamMap want = expected(name);
    auto model = models::load_model(kModel);
    io::apply_adapter(*model, kAdapters / name);
    const auto config = io::load_adapter(kAdapters / name).config;
    const auto original = logits_of(*model, want);
    const fs::path peft = temp_dir(std::string(name) + "_peft");
    const fs::path mlx = temp_dir(std::string(name) + "_mlx");
    io::save_peft_adapter(*model, config, kModel.string(), peft);
    io::save_mlx_lm_adapter(*model, config, mlx);
    for (const fs::path& dir : {peft, mlx}) {
      auto reloaded = models::load_model(kModel);
      io::apply_adapter(*reloaded, dir);
      EXPECT_LT(relative_error(logits_of(*reloaded, want), original), 1e-6f) << dir;
    }
    EXPECT_FALSE(fs::exists(peft.parent_path() / ("." + peft.filename().string() + ".partial-" +
                                                  std::to_string(getpid()))));
  }
}

// ft's own adapters: random values from fixed keys, saved in both layouts. With
// FT_WRITE_ADAPTER_FIXTURES=1 this writes tests/golden/adapters/ft_export_<kind>, which
// check_adapters.py --verify loads with PEFT and mlx-lm; otherwise a fresh export must
// be byte-identical to that committed one.
struct ExportCase {
  const char* kind;
  nn::LoraConfig config;
};

class Export : public ::testing::TestWithParam<ExportCase> {};

TEST_P(Export, MatchesTheCommittedExportThatPeftAndMlxLmLoaded) {
  // The committed files were written from the CPU's random numbers, byte for byte.
  ft::testing::OnCpu cpu;
  const ExportCase& c = GetParam();
  auto model = models::load_model(kModel);
  nn::apply_lora(*model, c.config);
  model->update(testing::random_adapter_values(io::adapter_parameters(*model), 1234));

  const bool write = std::getenv("FT_WRITE_ADAPTER_FIXTURES") != nullptr;
  const std::string base = std::string("ft_export_") + c.kind;
  const fs::path out = write ? kAdapters / base : temp_dir(base);
  io::save_peft_adapter(*model, c.config, "tests/golden/models/llama", out / "peft");
  io::save_mlx_lm_adapter(*model, c.config, out / "mlx_lm");

  ParamMap ids_only;
  ids_only.set("ids", expected("peft_lora").at("ids"));
  const auto logits = logits_of(*model, ids_only);
  if (write) {
    ParamMap{{"ids", ids_only.at("ids")}, {"logits", logits}}.save_safetensors(
        (kAdapters / (base + "_expected.safetensors")).string());
    GTEST_SKIP() << "wrote " << out;
  }
  for (const char* file : {"peft/adapter_model.safetensors", "peft/adapter_config.json",
                           "mlx_lm/adapters.safetensors", "mlx_lm/adapter_config.json"}) {
    EXPECT_EQ(read_bytes(out / file), read_bytes(kAdapters / base / file))
        << file << " differs from the committed export: rerun the exporter and "
        << "check_adapters.py --verify (tests/golden/check_adapters.py says how)";
  }
  // The logits PEFT and mlx-lm were checked against are the ones ft computes.
  const ParamMap committed = expected(base);
  EXPECT_LT(relative_error(logits, committed.at("logits")), 1e-5f);
  // And ft reads its own export back.
  for (const char* layout : {"peft", "mlx_lm"}) {
    auto reloaded = models::load_model(kModel);
    io::apply_adapter(*reloaded, out / layout);
    EXPECT_LT(relative_error(logits_of(*reloaded, ids_only), logits), 1e-6f) << layout;
  }
}

nn::LoraConfig lora_all_attention() {
  nn::LoraConfig c;
  c.rank = 4;
  c.alpha = 8;
  c.target_modules = {"q_proj", "k_proj", "v_proj", "o_proj"};
  c.seed = 3;
  return c;
}

nn::LoraConfig dora_last_layer() {
  nn::LoraConfig c;
  c.rank = 2;
  c.alpha = 5;
  c.rslora = true;
  c.dora = true;
  c.num_layers = 1;
  c.target_modules = {"v_proj", "up_proj", "down_proj"};
  c.seed = 4;
  return c;
}

INSTANTIATE_TEST_SUITE_P(Kinds, Export,
                         ::testing::Values(ExportCase{"lora", lora_all_attention()},
                                           ExportCase{"dora", dora_last_layer()}),
                         [](const auto& info) { return std::string(info.param.kind); });

TEST(SaveAdapter, PeftConfigNamesTheTargets) {
  auto model = models::load_model(kModel);
  auto config = dora_last_layer();
  nn::apply_lora(*model, config);
  const fs::path out = temp_dir("peft_config");
  io::save_peft_adapter(*model, config, "base", out);
  auto j = nlohmann::json::parse(std::ifstream(out / "adapter_config.json"));
  EXPECT_EQ(j["peft_type"], "LORA");
  EXPECT_EQ(j["task_type"], "CAUSAL_LM");
  EXPECT_EQ(j["r"], 2);
  EXPECT_EQ(j["lora_alpha"], 5.0);
  EXPECT_EQ(j["use_dora"], true);
  EXPECT_EQ(j["use_rslora"], true);
  EXPECT_EQ(j["bias"], "none");
  EXPECT_EQ(j["base_model_name_or_path"], "base");
  EXPECT_EQ(j["layers_to_transform"], nlohmann::json::array({1}));
  EXPECT_EQ(j["target_modules"], nlohmann::json::array({"down_proj", "up_proj", "v_proj"}));
  auto tensors = ParamMap::load_safetensors((out / "adapter_model.safetensors").string());
  EXPECT_EQ(tensors.at("base_model.model.model.layers.1.mlp.up_proj.lora_A.weight").shape(),
            (mx::Shape{2, 32}));
  EXPECT_EQ(tensors.at("base_model.model.model.layers.1.mlp.up_proj.lora_magnitude_vector").shape(),
            (mx::Shape{48}));
  EXPECT_EQ(tensors.size(), 9u);
}

TEST(SaveAdapter, RefusesWhatMlxLmCannotExpress) {
  auto model = models::load_model(kModel);
  nn::LoraConfig config;
  config.target_regex = R"(layers\.0\.self_attn\.q_proj|layers\.1\.self_attn\.v_proj)";
  nn::apply_lora(*model, config);
  testing::expect_error([&] { io::save_mlx_lm_adapter(*model, config, temp_dir("mlx_bad")); },
                        "same modules in each of the last N layers");
  EXPECT_FALSE(fs::exists(temp_dir("mlx_bad")));
  // PEFT takes the set as a regex naming each module.
  const fs::path peft = temp_dir("peft_regex");
  io::save_peft_adapter(*model, config, "base", peft);
  auto reloaded = models::load_model(kModel);
  EXPECT_EQ(io::apply_adapter(*reloaded, peft),
            (std::vector<std::string>{"model.layers.0.self_attn.q_proj",
                                      "model.layers.1.self_attn.v_proj"}));
}

TEST(ApplyAdapter, RefusesAnAdapterForAnotherModel) {
  // A copy of peft_lora with one module renamed away and one tensor of the wrong width.
  ParamMap tensors =
      ParamMap::load_safetensors((kAdapters / "peft_lora" / "adapter_model.safetensors").string());
  ParamMap changed;
  const std::string p = "base_model.model.model.layers.";
  for (const auto& [name, value] : tensors) {
    std::string n = name;
    if (n.starts_with(p + "0.self_attn.q_proj")) n.replace(0, (p + "0").size(), p + "7");
    if (n == p + "1.mlp.down_proj.lora_A.weight")
      changed.set(n, mx::zeros({value.shape(0), value.shape(1) + 8}));
    else
      changed.set(n, value);
  }
  const fs::path dir = temp_dir("foreign");
  fs::create_directories(dir);
  fs::copy_file(kAdapters / "peft_lora" / "adapter_config.json", dir / "adapter_config.json");
  changed.save_safetensors((dir / "adapter_model.safetensors").string());

  auto model = models::load_model(kModel);
  std::string message;
  try {
    io::apply_adapter(*model, dir);
  } catch (const Error& e) {
    message = e.what();
  }
  EXPECT_NE(message.find("adapter_model.safetensors does not fit this model (2 problems)"),
            std::string::npos)
      << message;
  EXPECT_NE(message.find("the model has no module 'model.layers.7.self_attn.q_proj'"),
            std::string::npos)
      << message;
  EXPECT_NE(message.find("'model.layers.1.mlp.down_proj' is (32, 48) in the model but the "
                         "adapter is for (32, 56)"),
            std::string::npos)
      << message;
  // Nothing was replaced.
  EXPECT_TRUE(io::adapter_parameters(*model).empty());
}

TEST(LoadAdapter, NamesTheFolderOrFileAtFault) {
  testing::expect_error([] { io::load_adapter(temp_dir("missing")); }, "not a folder");
  const fs::path empty = temp_dir("empty");
  fs::create_directories(empty);
  testing::expect_error([&] { io::load_adapter(empty); }, "holds neither");
  const fs::path truncated = temp_dir("truncated");
  fs::create_directories(truncated);
  fs::copy_file(kAdapters / "mlx_lora" / "adapter_config.json", truncated / "adapter_config.json");
  std::string bytes = read_bytes(kAdapters / "mlx_lora" / "adapters.safetensors");
  std::ofstream(truncated / "adapters.safetensors", std::ios::binary)
      << bytes.substr(0, bytes.size() / 2);
  testing::expect_error([&] { io::load_adapter(truncated); }, "adapters.safetensors");
}

TEST(Fuse, FusedFolderGivesTheLogitsOfBasePlusAdapter) {
  for (const char* name : {"peft_dora", "mlx_lora"}) {
    const ParamMap want = expected(name);
    const fs::path out = temp_dir(std::string("fused_") + name);
    models::fuse_model_folder(kModel, kAdapters / name, out);
    auto fused = models::load_model(out);  // strict: no adapter tensors left over
    EXPECT_LT(relative_error(logits_of(*fused, want), want.at("logits")), 1e-4f) << name;
    EXPECT_TRUE(io::adapter_parameters(*fused).empty());
    EXPECT_EQ(read_bytes(out / "generation_config.json"),
              read_bytes(kModel / "generation_config.json"));
    EXPECT_EQ(io::read_config(out).json(), io::read_config(kModel).json());
  }
}

// A quantized base (8-bit, group 32, as QLoRA trains): the adapter applies to the
// QuantizedLinear layers, and fusing with dequantize gives plain Linear layers computing
// base + adapter, while without it the merged weights are quantized again.
TEST(Fuse, DequantizesOnRequest) {
  auto quantized_model = [] {
    auto model = models::load_model(kModel);
    for (const auto& [path, module] : model->named_modules())
      if (auto* linear = dynamic_cast<nn::Linear*>(module);
          linear && path.find(".layers.") != std::string::npos && linear->in_features() % 32 == 0)
        model->replace_module(path, nn::QuantizedLinear::from_linear(*linear, 32, 8));
    return model;
  };
  const ParamMap want = expected("mlx_lora");
  auto model = quantized_model();
  io::apply_adapter(*model, kAdapters / "mlx_lora");
  const auto adapted = logits_of(*model, want);
  // The 8-bit base stays close to the float one.
  EXPECT_LT(relative_error(adapted, want.at("logits")), 1e-1f);

  models::fuse_adapter(*model, /*dequantize=*/true);
  EXPECT_NE(dynamic_cast<nn::Linear*>(model->find_module("model.layers.0.self_attn.q_proj").get()),
            nullptr);
  EXPECT_LT(relative_error(logits_of(*model, want), adapted), 1e-5f);

  auto requantized = quantized_model();
  io::apply_adapter(*requantized, kAdapters / "mlx_lora");
  models::fuse_adapter(*requantized, /*dequantize=*/false);
  EXPECT_NE(dynamic_cast<nn::QuantizedLinear*>(
                requantized->find_module("model.layers.0.self_attn.q_proj").get()),
            nullptr);
  const float requantized_error = relative_error(logits_of(*requantized, want), adapted);
  EXPECT_GT(requantized_error, 0.0f);  // the merged weights were rounded again
  EXPECT_LT(requantized_error, 1e-1f);
}

TEST(Fuse, RefusesAModelWithoutAdapters) {
  auto model = models::load_model(kModel);
  testing::expect_error([&] { models::fuse_adapter(*model); }, "no LoRA or DoRA layers");
}

TEST(FuseCommand, WritesTheFusedFolderOrOneErrorLine) {
  const fs::path out = temp_dir("cli_fused");
  const std::string command = std::string(FT_BINARY) + " fuse " + kModel.string() + " --adapter " +
                              (kAdapters / "mlx_dora").string() + " --out " + out.string() +
                              " > /dev/null 2>&1";
  ASSERT_EQ(std::system(command.c_str()), 0);
  const ParamMap want = expected("mlx_dora");
  auto fused = models::load_model(out);
  EXPECT_LT(relative_error(logits_of(*fused, want), want.at("logits")), 1e-4f);

  const fs::path log = temp_dir("cli_error.txt");
  const fs::path bad_out = temp_dir("cli_bad");
  const std::string bad = std::string(FT_BINARY) + " fuse " + kModel.string() + " --adapter " +
                          temp_dir("nowhere").string() + " --out " + bad_out.string() + " > " +
                          log.string() + " 2>&1";
  const int status = std::system(bad.c_str());
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 1);
  const std::string text = read_bytes(log);
  EXPECT_EQ(text.find("ft: error: "), 0u) << text;
  EXPECT_NE(text.find("nowhere: not a folder"), std::string::npos) << text;
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 1) << text;
  EXPECT_FALSE(fs::exists(bad_out));
}

}  // namespace
}  // namespace ft
