#include "ft/models/fuse.h"

#include "ft/core/error.h"
#include "ft/io/adapters.h"
#include "ft/io/model_folder.h"
#include "ft/models/quantize.h"
#include "ft/models/registry.h"
#include "ft/nn/lora.h"

namespace ft::models {
namespace fs = std::filesystem;

std::vector<std::string> fuse_adapter(nn::Module& model, bool dequantize) {
  auto paths = nn::fuse_lora(model, dequantize);
  FT_CHECK(!paths.empty(), "fuse", "the model has no LoRA or DoRA layers to merge");
  return paths;
}

void fuse_model_folder(const fs::path& model_dir, const fs::path& adapter_dir,
                       const fs::path& out_dir, const FuseOptions& options) {
  const io::ModelConfig config = io::read_config(model_dir);
  auto model = load_model(model_dir, options.dtype.value_or(io::config_dtype(config)));
  io::apply_adapter(*model, adapter_dir, std::nullopt, peft_module_prefix(config));
  fuse_adapter(*model, options.dequantize);

  nlohmann::json out_config = loaded_config(config);
  if (options.dequantize) {
    // The layers without adapters (the embedding, lm_head, ...) are still quantized.
    dequantize_model(*model);
    set_quantization_config(out_config, std::nullopt);
  }
  io::SaveOptions save;
  std::error_code ec;
  for (const char* name :
       {"tokenizer.json", "tokenizer_config.json", "tokenizer.model", "generation_config.json"})
    if (fs::is_regular_file(model_dir / name, ec)) save.copy_tokenizer_from = model_dir;
  io::save_model_folder(model->parameters(), out_config, out_dir, save);
  // The template the adapter was trained with becomes the model's.
  if (const auto saved = io::adapter_chat_template(adapter_dir)) {
    fs::copy_file(*saved, out_dir / io::kChatTemplateFile, fs::copy_options::overwrite_existing,
                  ec);
    FT_CHECK(!ec, "fuse", (out_dir / io::kChatTemplateFile).string(),
             ": cannot write: ", ec.message());
  }
}

}  // namespace ft::models
