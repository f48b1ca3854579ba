// ft info: MLX's version and backend, the devices, and memory; with a model folder, its
// architecture, parameter counts and what training it would take in memory.
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <optional>

#include <nlohmann/json.hpp>

#include "apps/ft/commands.h"
#include "ft/core/device.h"
#include "ft/core/dtype.h"
#include "ft/core/random.h"
#include "ft/hub/cache.h"
#include "ft/io/model_folder.h"
#include "ft/models/memory.h"
#include "ft/models/quantize.h"
#include "ft/models/registry.h"
#include "ft/nn/lora.h"
#include "ft/train/memory_fit.h"

namespace ft::cli {
namespace {

namespace fs = std::filesystem;

struct InfoOptions {
  bool as_json = false;
  std::string model;
  std::string method = "lora";
  int lora_rank = 8;
  std::vector<std::string> target_modules;  // empty: the family's default
  int num_layers = 0;
  std::string dtype = "float32";
  int batch_size = 4;
  int max_seq_length = 512;
  bool grad_checkpoint = false;
  std::string optimizer = "adamw";
  int quantize_bits = 0;
  int quantize_group_size = 64;
};

// Bytes of the weight files in a folder, or of a GGUF file.
uint64_t weights_on_disk(const fs::path& folder) {
  if (fs::is_regular_file(folder)) return fs::file_size(folder);
  uint64_t total = 0;
  for (const auto& entry : fs::directory_iterator(folder)) {
    auto ext = entry.path().extension();
    if (entry.is_regular_file() && (ext == ".safetensors" || ext == ".bin" || ext == ".npz"))
      total += entry.file_size();
  }
  return total;
}

void print_model_info(InfoOptions o) {
  o.model = hub::resolve_model(o.model).string();
  FT_CHECK(io::is_model_path(o.model), "info", o.model, ": no such model folder or GGUF file");
  io::ModelConfig config = io::read_config(o.model);
  models::Config c = models::from_hf_config(config);
  // Built lazily: the random weights are never computed, so any size costs nothing.
  Rng rng(0);
  std::unique_ptr<models::CausalLM> built = models::build_model(c, rng, parse_float_dtype(o.dtype));
  models::CausalLM& model = *built;
  uint64_t embedding = 0;
  for (const auto& [name, value] : model.parameters())
    if (model.is_embedding_parameter(name)) embedding += value.size();
  uint64_t total = model.num_parameters();
  // A quantized folder (its config's defaults) or QLoRA's quantized base.
  std::optional<io::QuantSpec> quant;
  if (auto q = io::quantization_config(config)) quant = q->defaults;
  if (o.quantize_bits > 0) {
    FT_CHECK(!quant, "info", o.model, " is quantized already; drop --quantize-bits");
    quant = io::QuantSpec{o.quantize_group_size, o.quantize_bits};
  }
  FT_CHECK(!quant || o.method != "full", "info",
           "full fine-tuning needs a floating-point base, not a quantized one");
  if (quant) models::quantize_model(model, *quant, /*evaluate=*/false);
  if (o.method != "full") {
    nn::LoraConfig lora;
    lora.rank = o.lora_rank;
    lora.dora = o.method == "dora";
    lora.target_modules = o.target_modules.empty()
                              ? models::family_of(c.model_type).default_lora_targets
                              : o.target_modules;
    lora.num_layers = o.num_layers;
    // Adapters stay f32 over a low-precision base, as ft train keeps them.
    nn::apply_lora(model, lora);
  }
  uint64_t trainable = model.num_trainable_parameters();
  const models::TrainingPlan plan =
      train::training_plan(o.batch_size, o.max_seq_length, o.grad_checkpoint, o.optimizer);
  models::MemoryEstimate m = models::estimate_training_memory(model, plan);
  uint64_t disk = weights_on_disk(o.model);

  if (o.as_json) {
    nlohmann::ordered_json out;
    out["model_type"] = c.model_type;
    out["layers"] = c.num_hidden_layers;
    out["hidden_size"] = c.hidden_size;
    out["intermediate_size"] = c.intermediate_size;
    out["attention_heads"] = c.num_attention_heads;
    out["kv_heads"] = c.num_key_value_heads;
    out["head_dim"] = c.resolved_head_dim();
    out["vocab_size"] = c.vocab_size;
    out["tied_embeddings"] = c.tie_word_embeddings;
    out["parameters"] = total;
    out["embedding_parameters"] = embedding;
    out["trainable_parameters"] = trainable;
    out["weights_on_disk"] = disk;
    out["memory"] = {{"weights", m.weights},
                     {"gradients", m.gradients},
                     {"master_weights", m.master_weights},
                     {"optimizer_state", m.optimizer_state},
                     {"activations", m.activations},
                     {"head", m.head},
                     {"dequantized", m.dequantized},
                     {"deferred", m.deferred},
                     {"total", m.total()}};
    std::cout << out.dump(2) << "\n";
    return;
  }
  std::printf(
      "%s: %s, %d layers, hidden %d, intermediate %d, %d heads (%d kv, dim %d), "
      "vocab %d%s\n",
      o.model.c_str(), c.model_type.c_str(), c.num_hidden_layers, c.hidden_size,
      c.intermediate_size, c.num_attention_heads, c.num_key_value_heads, c.resolved_head_dim(),
      c.vocab_size, c.tie_word_embeddings ? ", tied embeddings" : "");
  std::printf("parameters: %llu (%.1fM), of which embedding %llu; weights on disk %s\n",
              static_cast<unsigned long long>(total), total / 1e6,
              static_cast<unsigned long long>(embedding), format_bytes(disk).c_str());
  std::printf("trained (%s): %llu (%.2f%%)\n", o.method.c_str(),
              static_cast<unsigned long long>(trainable), 100.0 * trainable / total);
  std::string base = quant ? std::to_string(quant->bits) + "-bit base" : o.dtype;
  std::printf("training memory estimate, %s, batch %d x %d%s, %s:\n", base.c_str(), o.batch_size,
              o.max_seq_length, o.grad_checkpoint ? ", checkpointed" : "", o.optimizer.c_str());
  auto line = [](const char* what, uint64_t bytes) {
    std::printf("  %-16s %12s\n", what, format_bytes(bytes).c_str());
  };
  line("weights", m.weights);
  line("gradients", m.gradients);
  if (m.master_weights) line("f32 masters", m.master_weights);
  line("optimizer state", m.optimizer_state);
  line("activations", m.activations);
  line("output head", m.head);
  if (m.dequantized) line("dequantized", m.dequantized);
  if (m.deferred) line("released late", m.deferred);
  line("total", m.total());
}

void print_info(bool as_json) {
  SystemInfo info = system_info();
  if (as_json) {
    nlohmann::json out;
    out["ft_version"] = FT_VERSION;
    out["mlx_version"] = info.mlx_version;
    out["backend"] = info.backend;
    out["gpus"] = nlohmann::json::array();
    for (const auto& g : info.gpus)
      out["gpus"].push_back({{"index", g.index},
                             {"name", g.name},
                             {"architecture", g.architecture},
                             {"total_memory", g.total_memory},
                             {"free_memory", g.free_memory}});
    out["cpu"] = {
        {"model", info.cpu_model}, {"cores", info.cpu_cores}, {"blas_core", info.blas_core}};
    out["system_memory"] = info.system_memory;
    out["mlx_memory_limit"] = info.mlx_memory_limit;
    std::cout << out.dump(2) << "\n";
    return;
  }
  std::cout << "ft " << FT_VERSION << "\n"
            << "MLX " << info.mlx_version << ", backend " << info.backend << "\n";
  for (const auto& g : info.gpus) {
    std::cout << "GPU " << g.index << ": " << g.name;
    if (!g.architecture.empty()) std::cout << " (" << g.architecture << ")";
    std::cout << ", " << format_bytes(g.total_memory) << " memory";
    if (g.free_memory) std::cout << ", " << format_bytes(g.free_memory) << " free";
    std::cout << "\n";
  }
  if (info.gpus.empty()) std::cout << "GPU: none\n";
  std::cout << "CPU: " << info.cpu_model << ", " << info.cpu_cores << " cores";
  if (!info.blas_core.empty()) std::cout << ", OpenBLAS kernels " << info.blas_core;
  std::cout << "\n"
            << "System memory: " << format_bytes(info.system_memory) << "\n"
            << "MLX memory limit: " << format_bytes(info.mlx_memory_limit) << "\n";
}

}  // namespace

void add_info_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "info",
      "Show MLX's version and backend, devices and memory; with MODEL, the model's "
      "architecture, parameter counts and a training memory estimate");
  auto o = std::make_shared<InfoOptions>();
  cmd->add_option("model", o->model, kModelHelp);
  cmd->add_flag("--json", o->as_json, "Print one JSON object");
  auto group = "Training configuration of the estimate (with MODEL)";
  add_method_option(cmd, o->method)->group(group);
  add_lora_rank_option(cmd, o->lora_rank)->group(group);
  add_target_modules_option(cmd, o->target_modules, "the family's")->group(group);
  cmd->add_option("--num-layers", o->num_layers, "Adapt only the last N layers (0: all)")
      ->check(kNonNegative)
      ->capture_default_str()
      ->group(group);
  add_dtype_option(cmd, o->dtype, "weights and activations")->capture_default_str()->group(group);
  cmd->add_option("--batch-size", o->batch_size, "Rows per micro-batch")
      ->check(kPositive)
      ->capture_default_str()
      ->group(group);
  add_max_seq_length_option(cmd, o->max_seq_length, "Tokens per row")->group(group);
  add_grad_checkpoint_option(cmd, o->grad_checkpoint)->group(group);
  add_quantize_options(cmd, o->quantize_bits, o->quantize_group_size,
                       "before adding adapters, as ft train does", group);
  add_optimizer_option(cmd, o->optimizer)->group(group);
  cmd->callback([o] {
    if (o->model.empty()) {
      print_info(o->as_json);
    } else {
      print_model_info(*o);
    }
  });
}

}  // namespace ft::cli
