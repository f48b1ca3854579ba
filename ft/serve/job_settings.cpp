#include "ft/serve/job_settings.h"

#include <algorithm>
#include <map>
#include <set>
#include <sstream>

#include "ft/data/dataset.h"  // defines: data::parse_data_source
#include "ft/hub/cache.h"     // defines: hub::parse_repo_id
#include "ft/serve/job.h"

namespace ft::serve {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

[[noreturn]] void bad_request(const std::string& fact) {
  throw ApiError(400, "bad_request", fact);
}

// Whether `child` (canonical) is `root` (canonical) or lies below it, component by component.
bool is_inside(const fs::path& child, const fs::path& root) {
  auto c = child.begin();
  for (auto r = root.begin(); r != root.end(); ++r, ++c)
    if (c == child.end() || *c != *r) return false;
  return true;
}

std::string as_string(const json& value, const std::string& key) {
  if (!value.is_string() || value.get<std::string>().empty())
    bad_request("\"" + key + "\" must be a non-empty string");
  return value.get<std::string>();
}

json as_number(const json& value, const std::string& key) {
  if (!value.is_number()) bad_request("\"" + key + "\" must be a number");
  return value;
}

// A list of strings, or one string as a list of one.
std::vector<std::string> as_strings(const json& value, const std::string& key) {
  if (value.is_string()) return {as_string(value, key)};
  if (!value.is_array() || value.empty())
    bad_request("\"" + key + "\" must be a path or a list of paths");
  std::vector<std::string> out;
  for (const json& v : value) out.push_back(as_string(v, key));
  return out;
}

// A Hugging Face id (ORG/NAME[@REVISION]) that names no file under the first root.
bool is_hub_id(const std::string& text, const Roots& roots) {
  std::error_code ec;
  return hub::parse_repo_id(text).has_value() && !fs::exists(roots.folders().front() / text, ec);
}

std::string confine_data(const std::string& text, const Roots& roots, const std::string& key) {
  data::DataSource source;
  try {
    source = data::parse_data_source(text);
  } catch (const Error& e) {
    bad_request("\"" + key + "\": " + e.fact());
  }
  std::string path = roots.confine(source.path.string(), key).string();
  if (source.weight > 0) {
    std::ostringstream weight;
    weight << ':' << source.weight;
    path += weight.str();
  }
  return path;
}

// The TypeScript client's shape (docs/serve.md) as ft's keys.
json from_client_shape(const json& body) {
  static const std::set<std::string> known = {
      "name",   "baseModel",  "dataset",   "parameters", "optimization", "export",
      "method", "iterations", "evalEvery", "saveEvery",  "seed",         "quantizeBits"};
  for (const auto& [key, value] : body.items())
    if (!known.count(key)) bad_request("unknown key \"" + key + "\"");
  json ft = json::object();
  ft["model"] = as_string(body["baseModel"], "baseModel");
  const json& dataset = body.contains("dataset") ? body["dataset"] : json();
  if (!dataset.is_object()) bad_request("\"dataset\" must be an object with \"trainingData\"");
  for (const auto& [key, value] : dataset.items()) {
    if (key == "trainingData") {
      ft["data"] = as_strings(value, "dataset.trainingData");
    } else if (key == "validationData") {
      ft["valid-data"] = as_string(value, "dataset.validationData");
    } else if (key == "format") {
      static const std::map<std::string, std::string> formats = {
          {"chat", "chat"}, {"completion", "completions"}, {"custom", "auto"}};
      auto it = value.is_string() ? formats.find(value.get<std::string>()) : formats.end();
      if (it == formats.end()) bad_request("\"dataset.format\" must be chat, completion or custom");
      ft["format"] = it->second;
    } else {
      bad_request("unknown key \"dataset." + key + "\"");
    }
  }
  if (!ft.contains("data")) bad_request("\"dataset.trainingData\" is missing");
  static const std::map<std::string, std::string> parameters = {
      {"learningRate", "learning-rate"},
      {"batchSize", "batch-size"},
      {"epochs", "epochs"},
      {"sequenceLength", "max-seq-length"},
      {"loraRank", "lora-rank"},
      {"loraAlpha", "lora-alpha"}};
  if (body.contains("parameters")) {
    if (!body["parameters"].is_object()) bad_request("\"parameters\" must be an object");
    for (const auto& [key, value] : body["parameters"].items()) {
      auto it = parameters.find(key);
      if (it == parameters.end()) bad_request("unknown key \"parameters." + key + "\"");
      ft[it->second] = as_number(value, "parameters." + key);
    }
  }
  if (body.contains("optimization")) {
    const json& o = body["optimization"];
    if (!o.is_object()) bad_request("\"optimization\" must be an object");
    for (const auto& [key, value] : o.items()) {
      if (key == "gradientCheckpointing") {
        if (!value.is_boolean())
          bad_request("\"optimization.gradientCheckpointing\" must be true or false");
        ft["grad-checkpoint"] = value;
      } else if (key == "mixedPrecision") {
        static const std::map<std::string, std::string> dtypes = {
            {"bf16", "bfloat16"}, {"fp16", "float16"}, {"fp32", "float32"}};
        auto it = value.is_string() ? dtypes.find(value.get<std::string>()) : dtypes.end();
        if (it == dtypes.end())
          bad_request("\"optimization.mixedPrecision\" must be bf16, fp16 or fp32");
        ft["dtype"] = it->second;
      } else {
        bad_request("unknown key \"optimization." + key + "\"");
      }
    }
  }
  static const std::map<std::string, std::string> extra = {{"iterations", "iterations"},
                                                           {"evalEvery", "eval-every"},
                                                           {"saveEvery", "save-every"},
                                                           {"seed", "seed"},
                                                           {"quantizeBits", "quantize-bits"}};
  for (const auto& [key, name] : extra)
    if (body.contains(key)) ft[name] = as_number(body[key], key);
  if (body.contains("method")) ft["method"] = as_string(body["method"], "method");
  return ft;
}

}  // namespace

Roots::Roots(const std::vector<fs::path>& folders) {
  FT_CHECK(!folders.empty(), "serve", "no --root folder");
  for (const fs::path& f : folders) {
    std::error_code ec;
    fs::path c = fs::canonical(f, ec);
    FT_CHECK(!ec && fs::is_directory(c), "serve", f.string(), ": no such folder (--root)");
    folders_.push_back(c);
  }
}

fs::path Roots::confine(const std::string& path, const std::string& what) const {
  if (path.empty()) bad_request("\"" + what + "\" is empty");
  if (path.find('\0') != std::string::npos) bad_request("\"" + what + "\" holds a NUL byte");
  fs::path p(path);
  if (p.is_relative()) p = folders_.front() / p;
  std::error_code ec;
  // Links are followed as far as the path exists; `..` after that is resolved lexically.
  fs::path resolved = fs::weakly_canonical(p, ec);
  if (ec) bad_request("\"" + what + "\": " + path + ": " + ec.message());
  for (const fs::path& root : folders_)
    if (is_inside(resolved, root)) return resolved;
  throw ApiError(403, "forbidden",
                 "\"" + what + "\": " + path + " is outside the server's --root folders");
}

JobRequest parse_job_request(const json& body, const Roots& roots) {
  if (!body.is_object()) bad_request("the body must be a JSON object");
  JobRequest r;
  if (body.contains("name")) r.name = as_string(body["name"], "name");
  if (body.contains("export")) {
    const json& e = body["export"];
    // Not e.value("format", ""), which throws nlohmann's type_error for a format that is not
    // a string (fuzz/regressions/job_request/).
    if (!e.is_object() || !e.contains("format") || e["format"] != "gguf")
      bad_request("\"export\" must be {\"format\": \"gguf\", \"type\": TYPE}");
    r.exported = {{"format", "gguf"},
                  {"type", e.contains("type") ? as_string(e["type"], "export.type") : "q8_0"}};
  }
  json ft;
  if (body.contains("baseModel")) {
    ft = from_client_shape(body);
  } else {
    ft = json::object();
    for (const auto& [key, value] : body.items()) {
      if (key == "name" || key == "export") continue;
      std::string k = key;
      std::replace(k.begin(), k.end(), '_', '-');
      ft[k] = value;
    }
  }
  for (const char* key : {"output-dir", "overwrite", "config", "events", "tensorboard"})
    if (ft.contains(key))
      bad_request(std::string("\"") + key + "\" is set by the server, not by a job");
  if (!ft.contains("model")) bad_request("no model: give \"model\" (or \"baseModel\")");
  if (!ft.contains("data")) bad_request("no data: give \"data\" (or \"dataset.trainingData\")");
  // Every path a job reads, confined to the roots; a model may also be a Hub id.
  for (const char* key : {"model", "teacher", "adapter"}) {
    if (!ft.contains(key)) continue;
    const std::string text = as_string(ft[key], key);
    ft[key] = is_hub_id(text, roots) ? text : roots.confine(text, key).string();
  }
  std::vector<std::string> data;
  for (const std::string& d : as_strings(ft["data"], "data"))
    data.push_back(confine_data(d, roots, "data"));
  ft["data"] = data;
  if (ft.contains("valid-data"))
    ft["valid-data"] =
        roots.confine(as_string(ft["valid-data"], "valid-data"), "valid-data").string();
  if (ft.contains("template")) {
    const std::string t = as_string(ft["template"], "template");
    if (t.find('/') != std::string::npos || t.ends_with(".jinja"))
      ft["template"] = roots.confine(t, "template").string();
  }
  r.train = ft;
  return r;
}

}  // namespace ft::serve
