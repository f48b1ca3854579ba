#include "ft/io/adapter_files.h"

#include <unistd.h>  // defines: getpid, for names of temporary folders

#include <fstream>

#include "ft/core/regex.h"  // defines: Regex, regex_escape

namespace ft::io::adapter_files {

// Every LoRA/DoRA wrapper under model, by path.
std::vector<std::pair<std::string, const nn::LoRALinear*>> wrappers(const nn::Module& model) {
  std::vector<std::pair<std::string, const nn::LoRALinear*>> out;
  for (const auto& [path, module] : model.named_modules())
    if (auto* w = dynamic_cast<const nn::LoRALinear*>(module)) out.emplace_back(path, w);
  return out;
}

// Every ExpertLoRA under model, by the path of the parameter it adapts.
std::vector<std::pair<std::string, const nn::ExpertLoRA*>> expert_adapters(
    const nn::Module& model) {
  std::vector<std::pair<std::string, const nn::ExpertLoRA*>> out;
  for (const auto& [path, module] : model.named_modules())
    if (auto* e = dynamic_cast<const nn::ExpertLoRA*>(module)) out.emplace_back(path, e);
  return out;
}

// "a.b.c" -> {"a.b", "c"}.
std::pair<std::string, std::string> split_last(const std::string& path) {
  const size_t dot = path.rfind('.');
  if (dot == std::string::npos) return {"", path};
  return {path.substr(0, dot), path.substr(dot + 1)};
}

// The ExpertWeights at path in model, or null.
const nn::ExpertWeights* host_at(const nn::Module& model, const std::string& path) {
  return dynamic_cast<const nn::ExpertWeights*>(model.find_module(path).get());
}

// "model.layers.12.self_attn.q_proj" -> 12 and "self_attn.q_proj"; -1 off the layers.
std::pair<int, std::string> split_layer(const std::string& path) {
  static const Regex re(R"(model\.layers\.(\d{1,9})\.(.+))", "adapter");
  std::vector<std::string_view> groups;
  if (!re.full_match(path, &groups)) return {-1, ""};
  return {std::stoi(std::string(groups[1])), std::string(groups[2])};
}

// A regex that matches exactly these paths (a search with anchors; PEFT's
// re.fullmatch accepts it too).
std::string exact_regex(const std::vector<std::string>& paths) {
  std::string re = "^(";
  for (size_t i = 0; i < paths.size(); ++i) {
    if (i > 0) re += '|';
    re += regex_escape(paths[i]);
  }
  re += ")$";
  return re;
}

void write_json(const fs::path& file, const json& value) {
  std::ofstream f(file, std::ios::binary);
  f << value.dump(2) << "\n";
  f.close();
  FT_CHECK(f, kPlace, file.string(), ": cannot write");
}

// ".<name><kind><tag>", a hidden sibling of out_dir.
fs::path sibling(const fs::path& parent, const fs::path& out_dir, const char* kind,
                 const std::string& tag) {
  std::string name = ".";
  name += out_dir.filename().string();
  name += kind;
  name += tag;
  return parent / name;
}

// Builds out_dir through fill(tmp) in a sibling folder renamed into place at the end.
void write_folder_atomically(const fs::path& out_dir,
                             const std::function<void(const fs::path&)>& fill) {
  FT_CHECK(!out_dir.filename().empty(), kPlace, out_dir.string(),
           ": the output needs a folder name");
  std::error_code ec;
  const fs::path parent = out_dir.parent_path().empty() ? fs::path(".") : out_dir.parent_path();
  fs::create_directories(parent, ec);
  FT_CHECK(!ec, kPlace, out_dir.string(), ": cannot create ", parent.string(), ": ", ec.message());
  FT_CHECK(!fs::exists(out_dir, ec) || fs::is_directory(out_dir, ec), kPlace, out_dir.string(),
           ": exists and is not a folder");
  const std::string tag = std::to_string(getpid());
  const fs::path tmp = sibling(parent, out_dir, ".partial-", tag);
  fs::remove_all(tmp, ec);
  fs::create_directory(tmp, ec);
  FT_CHECK(!ec, kPlace, out_dir.string(), ": cannot write in ", parent.string(), ": ",
           ec.message());
  try {
    fill(tmp);
    const fs::path old = sibling(parent, out_dir, ".old-", tag);
    const bool replace = fs::exists(out_dir, ec);
    if (replace) {
      fs::remove_all(old, ec);
      fs::rename(out_dir, old, ec);
      FT_CHECK(!ec, kPlace, out_dir.string(), ": cannot replace: ", ec.message());
    }
    fs::rename(tmp, out_dir, ec);
    FT_CHECK(!ec, kPlace, out_dir.string(), ": cannot rename into place: ", ec.message());
    if (replace) fs::remove_all(old, ec);
  } catch (...) {
    fs::remove_all(tmp, ec);
    throw;
  }
}

Collected collect(const nn::Module& model, const nn::LoraConfig& config) {
  Collected c;
  auto take_rank = [&](int rank) {
    FT_CHECK(c.rank == 0 || c.rank == rank, kPlace, "adapters of ranks ", c.rank, " and ", rank,
             " in one model cannot be saved with one rank");
    c.rank = rank;
  };
  for (const auto& [path, w] : wrappers(model)) {
    take_rank(w->rank());
    c.dora = c.dora || dynamic_cast<const nn::DoRALinear*>(w) != nullptr;
    c.paths.push_back(path);
  }
  for (const auto& [path, e] : expert_adapters(model)) {
    take_rank(e->rank());
    c.stacked.push_back(path);
  }
  FT_CHECK(!c.paths.empty() || !c.stacked.empty(), kPlace,
           "the model has no LoRA or DoRA layers to save");
  FT_CHECK(c.dora == config.dora, kPlace, "the config says dora = ", config.dora,
           " but the model's adapters say otherwise");
  return c;
}

float lora_scale(const nn::LoraConfig& config, int rank) {
  return config.rslora ? config.alpha / std::sqrt(static_cast<float>(rank))
                       : config.alpha / static_cast<float>(rank);
}

json read_json(const fs::path& file) {
  std::ifstream f(file, std::ios::binary);
  FT_CHECK(f, kPlace, file.string(), ": cannot open");
  try {
    return json::parse(f);
  } catch (const json::exception& e) {
    throw Error(kPlace, file.string() + ": not valid JSON: " + e.what());
  }
}

// The adapter's scaling settings, named with the file and the field: the rank
// (1 to 2^16), a finite positive alpha (scale for mlx-lm) and a dropout in [0, 1).
void check_lora_settings(const nn::LoraConfig& c, const fs::path& file, const char* rank_key) {
  FT_CHECK(c.rank > 0 && c.rank <= (1 << 16), kPlace, file.string(), ": '", rank_key,
           "' must be between 1 and 65536, got ", c.rank);
  FT_CHECK(std::isfinite(c.alpha) && c.alpha > 0, kPlace, file.string(),
           ": the scale (alpha / rank) must be finite and positive, got alpha ", c.alpha);
  FT_CHECK(c.dropout >= 0 && c.dropout < 1, kPlace, file.string(),
           ": the dropout must be in [0, 1), got ", c.dropout);
}

}  // namespace ft::io::adapter_files
