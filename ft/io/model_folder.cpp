#include "ft/io/model_folder.h"

#include <unistd.h>  // defines: getpid, for names of temporary folders

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <set>
#include <sstream>
#include <unordered_set>

#include "ft/core/dtype.h"
#include "ft/core/error.h"
#include "ft/io/gguf.h"
#include "ft/io/npz.h"
#include "ft/io/safetensors_file.h"
#include "ft/io/torch_checkpoint.h"

namespace ft::io {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::string type_name(const json& v) {
  if (v.is_number_integer()) return "an integer";
  if (v.is_number_float()) return "a number";
  if (v.is_string()) return "a string";
  if (v.is_boolean()) return "a boolean";
  if (v.is_array()) return "a list";
  if (v.is_object()) return "an object";
  return "null";
}

std::string read_text(const fs::path& file, const char* place) {
  std::ifstream in(file, std::ios::binary);
  FT_CHECK(in, place, file.string(), ": cannot open");
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

json parse_json(const fs::path& file, const char* place, const std::string& text,
                const json::parser_callback_t& callback = nullptr) {
  try {
    return json::parse(text, callback);
  } catch (const json::exception& e) {  // parse_error, or out_of_range for a number like 1e999
    throw Error(place, file.string() + ": not valid JSON: " + e.what());
  }
}

bool has_suffix(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// One weights file, by its extension.
ParamMap load_file(const fs::path& file, std::optional<mx::Dtype> dtype,
                   const std::unordered_set<std::string>* only = nullptr) {
  const std::string name = file.filename().string();
  if (has_suffix(name, ".safetensors")) return load_safetensors_file(file, dtype, only);
  ParamMap all;
  if (has_suffix(name, ".bin") || has_suffix(name, ".pt") || has_suffix(name, ".pth"))
    all = load_torch_checkpoint(file, dtype);
  else if (has_suffix(name, ".npz"))
    all = load_npz(file, dtype);
  else
    throw Error("weights", file.string() +
                               ": unknown weights format (expected .safetensors, "
                               ".bin, .pt, .pth or .npz)");
  if (!only) return all;
  return all.filter([&](const std::string& n, const mx::array&) { return only->count(n) > 0; });
}

// A sharded checkpoint: index.json's weight_map names the shard of every tensor.
ParamMap load_sharded(const fs::path& index_file, std::optional<mx::Dtype> dtype) {
  constexpr const char* place = "weights";
  const std::string where = index_file.string();
  // nlohmann keeps the last of duplicate keys silently; a callback sees every key.
  std::string top_key, duplicate;
  std::set<std::string> seen;
  auto callback = [&](int depth, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::key) {
      if (depth == 1)
        top_key = parsed.get<std::string>();
      else if (depth == 2 && top_key == "weight_map" &&
               !seen.insert(parsed.get<std::string>()).second && duplicate.empty())
        duplicate = parsed.get<std::string>();
    }
    return true;
  };
  const json index = parse_json(index_file, place, read_text(index_file, place), callback);
  FT_CHECK(duplicate.empty(), place, where, ": tensor '", duplicate,
           "' is listed twice in weight_map");
  FT_CHECK(index.is_object() && index.contains("weight_map") && index["weight_map"].is_object(),
           place, where, ": no \"weight_map\" object");
  std::vector<std::string> shard_order;
  std::map<std::string, std::unordered_set<std::string>> by_shard;
  for (const auto& [name, shard] : index["weight_map"].items()) {
    FT_CHECK(shard.is_string(), place, where, ": weight_map entry '", name, "' is not a file name");
    const std::string file = shard.get<std::string>();
    if (!by_shard.count(file)) shard_order.push_back(file);
    by_shard[file].insert(name);
  }
  FT_CHECK(!by_shard.empty(), place, where, ": weight_map is empty");
  for (const auto& file : shard_order) {
    std::error_code ec;
    FT_CHECK(fs::is_regular_file(index_file.parent_path() / file, ec), place, where, ": shard '",
             file, "' (holding '", *std::min_element(by_shard[file].begin(), by_shard[file].end()),
             "') does not exist");
  }
  ParamMap merged;
  for (const auto& file : shard_order) {
    const auto& names = by_shard[file];
    ParamMap part = load_file(index_file.parent_path() / file, dtype, &names);
    std::vector<std::string> missing;
    for (const auto& n : names)
      if (!part.contains(n)) missing.push_back(n);
    std::sort(missing.begin(), missing.end(), natural_less);
    FT_CHECK(missing.empty(), place, where, ": tensor '", missing.empty() ? "" : missing[0], "'",
             missing.size() > 1 ? " and " + std::to_string(missing.size() - 1) + " more" : "",
             " listed for shard '", file, "' not found in it");
    for (const auto& [n, a] : part) merged.set(n, a);
  }
  std::vector<std::string> names = merged.names();
  std::sort(names.begin(), names.end(), natural_less);
  ParamMap out;
  for (const auto& n : names) out.set(n, merged.at(n));
  return out;
}

// Several weights files without an index (MLX community folders: model*.safetensors).
ParamMap load_all(const std::vector<fs::path>& files, std::optional<mx::Dtype> dtype) {
  ParamMap out;
  std::map<std::string, fs::path> origin;
  for (const auto& file : files) {
    for (const auto& [n, a] : load_file(file, dtype)) {
      FT_CHECK(!origin.count(n), "weights", "tensor '", n, "' is in both ", origin[n].string(),
               " and ", file.string());
      origin[n] = file;
      out.set(n, a);
    }
  }
  return out;
}

}  // namespace

ModelConfig::ModelConfig(nlohmann::json value, fs::path file)
    : json_(std::move(value)), file_(std::move(file)) {
  FT_CHECK(json_.is_object(), "config", file_.string(), ": not a JSON object");
}

bool ModelConfig::has(const std::string& key) const {
  return json_.contains(key) && !json_[key].is_null();
}

const nlohmann::json& ModelConfig::field(const std::string& key) const {
  FT_CHECK(has(key), "config", file_.string(), ": field '", key, "' is missing");
  return json_[key];
}

int64_t ModelConfig::get_int(const std::string& key) const {
  const nlohmann::json& v = field(key);
  // 4096.0 is accepted as an integer: some exporters write every number as a float. The
  // range is checked before any conversion (a double past int64's range converts to
  // nothing defined, an unsigned one past INT64_MAX would wrap).
  if (v.is_number_float()) {
    double d = v.get<double>();
    FT_CHECK(std::abs(d) < 9.2e18 && d == std::floor(d), "config", file_.string(), ": field '", key,
             "' must be an integer, got ", v.dump());
    return static_cast<int64_t>(d);
  }
  FT_CHECK(v.is_number_integer(), "config", file_.string(), ": field '", key,
           "' must be an integer, got ", type_name(v), " (", v.dump(), ")");
  FT_CHECK(!v.is_number_unsigned() || v.get<uint64_t>() <= uint64_t(INT64_MAX), "config",
           file_.string(), ": field '", key, "' is out of range (", v.dump(), ")");
  return v.get<int64_t>();
}

double ModelConfig::get_number(const std::string& key) const {
  const nlohmann::json& v = field(key);
  FT_CHECK(v.is_number(), "config", file_.string(), ": field '", key, "' must be a number, got ",
           type_name(v), " (", v.dump(), ")");
  return v.get<double>();
}

std::string ModelConfig::get_string(const std::string& key) const {
  const nlohmann::json& v = field(key);
  FT_CHECK(v.is_string(), "config", file_.string(), ": field '", key, "' must be a string, got ",
           type_name(v), " (", v.dump(), ")");
  return v.get<std::string>();
}

bool ModelConfig::get_bool(const std::string& key) const {
  const nlohmann::json& v = field(key);
  FT_CHECK(v.is_boolean(), "config", file_.string(), ": field '", key,
           "' must be true or false, got ", type_name(v), " (", v.dump(), ")");
  return v.get<bool>();
}

int64_t ModelConfig::get_int(const std::string& key, int64_t fallback) const {
  return has(key) ? get_int(key) : fallback;
}
double ModelConfig::get_number(const std::string& key, double fallback) const {
  return has(key) ? get_number(key) : fallback;
}
std::string ModelConfig::get_string(const std::string& key, const std::string& fallback) const {
  return has(key) ? get_string(key) : fallback;
}
bool ModelConfig::get_bool(const std::string& key, bool fallback) const {
  return has(key) ? get_bool(key) : fallback;
}

bool is_model_path(const fs::path& path) {
  std::error_code ec;
  return fs::is_directory(path, ec) || is_gguf_file(path);
}

ModelConfig read_config(const fs::path& folder) {
  std::error_code ec;
  FT_CHECK(fs::exists(folder, ec), "config", folder.string(), ": no such file or folder");
  if (is_gguf_file(folder)) return ModelConfig(gguf_model_config(read_gguf_file(folder)), folder);
  const fs::path file = fs::is_directory(folder, ec) ? folder / "config.json" : folder;
  FT_CHECK(fs::is_regular_file(file, ec), "config", file.string(), ": no such file");
  return ModelConfig(parse_json(file, "config", read_text(file, "config")), file);
}

mx::Dtype config_dtype(const ModelConfig& config) {
  for (const char* key : {"torch_dtype", "dtype"}) {
    if (!config.json().contains(key) || !config.json()[key].is_string()) continue;
    const auto name = config.json()[key].get<std::string>();
    if (name == "bfloat16" || name == "float16" || name == "float32")
      return parse_float_dtype(name);
  }
  return mx::float32;
}

std::optional<QuantSpec> QuantizationConfig::for_module(const std::string& module) const {
  auto it = modules.find(module);
  return it == modules.end() ? std::optional<QuantSpec>(defaults) : it->second;
}

std::optional<QuantizationConfig> quantization_config(const ModelConfig& config) {
  // mlx-lm writes the same object under both keys; Hugging Face's own
  // "quantization_config" (with a quant_method: bitsandbytes, gptq, ...) is not MLX's.
  std::string key = "quantization";
  if (!config.has(key)) {
    const json& hf =
        config.has("quantization_config") ? config.json()["quantization_config"] : json();
    if (!hf.is_object() || hf.contains("quant_method")) return std::nullopt;
    key = "quantization_config";
  }
  const json& q = config.json()[key];
  const std::string where = config.file().string() + ": \"" + key + "\"";
  FT_CHECK(q.is_object(), "config", where, " must be an object, got ", type_name(q));
  auto spec = [&](const json& o, const std::string& what) {
    QuantSpec s;
    FT_CHECK(o.contains("group_size") && o["group_size"].is_number_integer(), "config", where, what,
             ": needs an integer group_size");
    FT_CHECK(o.contains("bits") && o["bits"].is_number_integer(), "config", where, what,
             ": needs an integer bits");
    // Read wide, so that 2^32 + 4 is not taken for 4.
    int64_t group_size = o["group_size"].get<int64_t>(), bits = o["bits"].get<int64_t>();
    s.group_size = group_size == int(group_size) ? int(group_size) : 0;
    s.bits = bits == int(bits) ? int(bits) : 0;
    FT_CHECK(s.bits == 2 || s.bits == 3 || s.bits == 4 || s.bits == 5 || s.bits == 6 || s.bits == 8,
             "config", where, what, ": bits must be 2, 3, 4, 5, 6 or 8, got ", s.bits);
    FT_CHECK(s.group_size == 32 || s.group_size == 64 || s.group_size == 128, "config", where, what,
             ": group_size must be 32, 64 or 128, got ", s.group_size);
    return s;
  };
  QuantizationConfig out;
  out.defaults = spec(q, "");
  for (const auto& [key, value] : q.items()) {
    if (key == "group_size" || key == "bits" || key == "mode") continue;
    if (value.is_boolean()) {
      FT_CHECK(!value.get<bool>(), "config", where, " entry '", key,
               "': true is not a quantization setting (use an object)");
      out.modules[key] = std::nullopt;
    } else if (value.is_object()) {
      out.modules[key] = spec(value, " entry '" + key + "'");
    }
  }
  if (q.contains("mode"))
    FT_CHECK(q["mode"] == "affine", "config", where, ": mode ", q["mode"].dump(),
             " is not supported (only affine)");
  return out;
}

std::vector<std::string> quantized_modules(const ParamMap& weights) {
  std::vector<std::string> out;
  for (const auto& [name, a] : weights) {
    if (!has_suffix(name, ".scales")) continue;
    const std::string module = name.substr(0, name.size() - 7);
    if (weights.contains(module + ".weight") && weights.contains(module + ".biases"))
      out.push_back(module);
  }
  return out;
}

ParamMap load_weights(const fs::path& path, std::optional<mx::Dtype> dtype) {
  std::error_code ec;
  FT_CHECK(fs::exists(path, ec), "weights", path.string(), ": no such file or folder");
  if (!fs::is_directory(path, ec)) {
    if (has_suffix(path.filename().string(), ".index.json")) return load_sharded(path, dtype);
    return load_file(path, dtype);
  }
  for (const char* index : {"model.safetensors.index.json", "pytorch_model.bin.index.json"})
    if (fs::is_regular_file(path / index, ec)) return load_sharded(path / index, dtype);
  if (fs::is_regular_file(path / "model.safetensors", ec))
    return load_file(path / "model.safetensors", dtype);
  std::vector<fs::path> safetensors, npz;
  for (const auto& entry : fs::directory_iterator(path, ec)) {
    const std::string name = entry.path().filename().string();
    // Adapter files live beside some models; they are not the model's weights.
    if (has_suffix(name, ".safetensors") && name.rfind("adapter", 0) != 0)
      safetensors.push_back(entry.path());
    if (has_suffix(name, ".npz")) npz.push_back(entry.path());
  }
  std::sort(safetensors.begin(), safetensors.end());
  if (!safetensors.empty()) return load_all(safetensors, dtype);
  if (fs::is_regular_file(path / "pytorch_model.bin", ec))
    return load_file(path / "pytorch_model.bin", dtype);
  std::sort(npz.begin(), npz.end());
  if (!npz.empty()) return load_all(npz, dtype);
  throw Error("weights", path.string() +
                             ": no weights found (looked for *.safetensors, an index.json, "
                             "pytorch_model.bin and *.npz)");
}

void set_config_dtype(json& config, mx::Dtype dtype) {
  const char* name = float_dtype_name(dtype);
  bool set = false;
  for (const char* key : {"torch_dtype", "dtype"}) {
    if (!config.contains(key)) continue;
    config[key] = name;
    set = true;
  }
  if (!set) config["dtype"] = name;
}

void write_model_files(const json& config, const fs::path& folder, const SaveOptions& options,
                       std::optional<mx::Dtype> dtype) {
  constexpr const char* place = "save";
  auto write_json = [&](const fs::path& file, const json& value) {
    std::ofstream f(file, std::ios::binary);
    f << value.dump(2) << "\n";
    f.close();
    FT_CHECK(f, place, file.string(), ": cannot write");
  };
  if (!config.is_null()) {
    json out = config;
    if (dtype && out.is_object()) set_config_dtype(out, *dtype);
    write_json(folder / "config.json", out);
  }
  for (const auto& [name, value] : options.json_files) write_json(folder / name, value);
  if (options.copy_tokenizer_from) {
    const fs::path& from = *options.copy_tokenizer_from;
    std::error_code ec;
    int copied = 0;
    for (const char* name :
         {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
          "vocab.json", "merges.txt", "added_tokens.json", "chat_template.jinja",
          "chat_template.json", "generation_config.json"}) {
      if (!fs::is_regular_file(from / name, ec)) continue;
      fs::copy_file(from / name, folder / name, fs::copy_options::overwrite_existing, ec);
      FT_CHECK(!ec, place, (from / name).string(), ": cannot copy: ", ec.message());
      ++copied;
    }
    FT_CHECK(copied > 0, place, from.string(), ": no tokenizer files to copy");
  }
}

void save_model_folder(const ParamMap& weights, const json& config, const fs::path& out,
                       const SaveOptions& options) {
  constexpr const char* place = "save";
  FT_CHECK(!weights.empty(), place, out.string(), ": no tensors to save");
  FT_CHECK(options.max_shard_bytes > 0, place, "max_shard_bytes must be positive");
  FT_CHECK(!out.filename().empty(), place, out.string(), ": the output needs a folder name");
  std::error_code ec;
  const fs::path parent = out.parent_path().empty() ? fs::path(".") : out.parent_path();
  fs::create_directories(parent, ec);
  FT_CHECK(!ec, place, out.string(), ": cannot create ", parent.string(), ": ", ec.message());
  FT_CHECK(!fs::exists(out, ec) || fs::is_directory(out, ec), place, out.string(),
           ": exists and is not a folder");
  const std::string tag = std::to_string(getpid());
  const fs::path tmp = parent / ("." + out.filename().string() + ".partial-" + tag);
  fs::remove_all(tmp, ec);
  fs::create_directory(tmp, ec);
  FT_CHECK(!ec, place, out.string(), ": cannot write in ", parent.string(), ": ", ec.message());

  try {
    // Greedy sharding in the map's order, like transformers' save_pretrained.
    std::vector<std::vector<std::string>> shards(1);
    uint64_t current = 0, total = 0;
    for (const auto& [name, a] : weights) {
      const uint64_t bytes = a.nbytes();
      if (current > 0 && current + bytes > options.max_shard_bytes) {
        shards.emplace_back();
        current = 0;
      }
      shards.back().push_back(name);
      current += bytes;
      total += bytes;
    }
    const std::unordered_map<std::string, std::string> metadata = {{"format", "pt"}};
    json weight_map = json::object();
    for (size_t k = 0; k < shards.size(); ++k) {
      std::string file = "model.safetensors";
      if (shards.size() > 1) {
        char buf[64];
        std::snprintf(buf, sizeof(buf), "model-%05zu-of-%05zu.safetensors", k + 1, shards.size());
        file = buf;
      }
      ParamMap part;
      for (const auto& name : shards[k]) {
        part.set(name, weights.at(name));
        weight_map[name] = file;
      }
      part.save_safetensors((tmp / file).string(), metadata);
    }
    if (shards.size() > 1) {
      std::ofstream f(tmp / "model.safetensors.index.json", std::ios::binary);
      f << json{{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}}.dump(2) << "\n";
      f.close();
      FT_CHECK(f, place, (tmp / "model.safetensors.index.json").string(), ": cannot write");
    }
    std::optional<mx::Dtype> dtype;
    for (const auto& [name, a] : weights)
      if (a.dtype() == mx::float32 || a.dtype() == mx::bfloat16 || a.dtype() == mx::float16) {
        dtype = a.dtype();
        break;
      }
    write_model_files(config, tmp, options, dtype);
    // The folder appears complete only through this rename; an old one is replaced.
    if (fs::exists(out, ec)) {
      const fs::path old = parent / ("." + out.filename().string() + ".old-" + tag);
      fs::remove_all(old, ec);
      fs::rename(out, old, ec);
      FT_CHECK(!ec, place, out.string(), ": cannot replace: ", ec.message());
      fs::rename(tmp, out, ec);
      FT_CHECK(!ec, place, out.string(), ": cannot rename into place: ", ec.message());
      fs::remove_all(old, ec);
    } else {
      fs::rename(tmp, out, ec);
      FT_CHECK(!ec, place, out.string(), ": cannot rename into place: ", ec.message());
    }
  } catch (...) {
    fs::remove_all(tmp, ec);
    throw;
  }
}

}  // namespace ft::io
