#include "ft/core/param_map.h"

#include <algorithm>
#include <filesystem>

#include <mlx/io.h>          // defines: load_safetensors, save_safetensors
#include <mlx/transforms.h>  // defines: eval

#include "ft/core/error.h"
#include "ft/core/regex.h"  // defines: Regex

namespace ft {

ParamMap::ParamMap(std::initializer_list<Entry> entries) {
  for (const auto& [name, value] : entries) set(name, value);
}

void ParamMap::set(const std::string& name, const mx::array& value) {
  auto it = index_.find(name);
  if (it != index_.end()) {
    entries_[it->second].second = value;
    return;
  }
  index_.emplace(name, entries_.size());
  entries_.emplace_back(name, value);
}

const mx::array& ParamMap::at(const std::string& name) const {
  auto it = index_.find(name);
  FT_CHECK(it != index_.end(), "params", "no parameter named '", name, "'");
  return entries_[it->second].second;
}

mx::array& ParamMap::at(const std::string& name) {
  auto it = index_.find(name);
  FT_CHECK(it != index_.end(), "params", "no parameter named '", name, "'");
  return entries_[it->second].second;
}

const mx::array* ParamMap::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &entries_[it->second].second;
}

bool ParamMap::erase(const std::string& name) {
  auto it = index_.find(name);
  if (it == index_.end()) return false;
  entries_.erase(entries_.begin() + it->second);
  index_.clear();
  for (size_t i = 0; i < entries_.size(); ++i) index_.emplace(entries_[i].first, i);
  return true;
}

std::vector<std::string> ParamMap::names() const {
  std::vector<std::string> out;
  out.reserve(entries_.size());
  for (const auto& e : entries_) out.push_back(e.first);
  return out;
}

std::vector<mx::array> ParamMap::arrays() const {
  std::vector<mx::array> out;
  out.reserve(entries_.size());
  for (const auto& e : entries_) out.push_back(e.second);
  return out;
}

ParamMap ParamMap::zip(const std::vector<std::string>& names,
                       const std::vector<mx::array>& arrays) {
  FT_ASSERT(names.size() == arrays.size());
  ParamMap out;
  for (size_t i = 0; i < names.size(); ++i) out.set(names[i], arrays[i]);
  return out;
}

ParamMap ParamMap::filter(const std::string& regex) const {
  const Regex re(regex, "params");
  return filter([&](const std::string& name, const mx::array&) { return re.search(name); });
}

ParamMap ParamMap::filter(
    const std::function<bool(const std::string&, const mx::array&)>& keep) const {
  ParamMap out;
  for (const auto& [name, value] : entries_)
    if (keep(name, value)) out.set(name, value);
  return out;
}

ParamMap ParamMap::with_prefix(const std::string& prefix) const {
  ParamMap out;
  for (const auto& [name, value] : entries_) out.set(prefix + "." + name, value);
  return out;
}

ParamMap ParamMap::strip_prefix(const std::string& prefix) const {
  ParamMap out;
  const std::string head = prefix + ".";
  for (const auto& [name, value] : entries_)
    if (name.rfind(head, 0) == 0) out.set(name.substr(head.size()), value);
  return out;
}

size_t ParamMap::numel() const {
  size_t n = 0;
  for (const auto& e : entries_) n += e.second.size();
  return n;
}

void ParamMap::eval() const {
  mx::eval(arrays());
}

void ParamMap::save_safetensors(
    const std::string& path, const std::unordered_map<std::string, std::string>& metadata) const {
  std::unordered_map<std::string, mx::array> tensors;
  for (const auto& [name, value] : entries_) tensors.emplace(name, value);
  try {
    mx::save_safetensors(path, tensors, metadata);
  } catch (const std::exception& e) {
    throw Error("safetensors", path + ": cannot write: " + e.what());
  }
}

ParamMap ParamMap::load_safetensors(const std::string& path,
                                    std::unordered_map<std::string, std::string>* metadata) {
  FT_CHECK(std::filesystem::exists(path), "safetensors", path, ": no such file");
  std::pair<std::unordered_map<std::string, mx::array>,
            std::unordered_map<std::string, std::string>>
      loaded;
  try {
    loaded = mx::load_safetensors(path);
  } catch (const std::exception& e) {
    throw Error("safetensors", path + ": " + e.what());
  }
  std::vector<std::string> names;
  for (const auto& kv : loaded.first) names.push_back(kv.first);
  std::sort(names.begin(), names.end(), natural_less);
  ParamMap out;
  for (const auto& name : names) out.set(name, loaded.first.at(name));
  if (metadata) *metadata = std::move(loaded.second);
  return out;
}

ParamMap tree_map(const ParamMap& a, const std::function<mx::array(const mx::array&)>& fn) {
  ParamMap out;
  for (const auto& [name, value] : a) out.set(name, fn(value));
  return out;
}

ParamMap tree_map(const ParamMap& a, const ParamMap& b,
                  const std::function<mx::array(const mx::array&, const mx::array&)>& fn) {
  ParamMap out;
  for (const auto& [name, value] : a) out.set(name, fn(value, b.at(name)));
  return out;
}

bool natural_less(const std::string& a, const std::string& b) {
  size_t i = 0, j = 0;
  while (i < a.size() && j < b.size()) {
    if (std::isdigit(static_cast<unsigned char>(a[i])) &&
        std::isdigit(static_cast<unsigned char>(b[j]))) {
      size_t i_end = i, j_end = j;
      while (i_end < a.size() && std::isdigit(static_cast<unsigned char>(a[i_end]))) ++i_end;
      while (j_end < b.size() && std::isdigit(static_cast<unsigned char>(b[j_end]))) ++j_end;
      std::string_view x(a.data() + i, i_end - i), y(b.data() + j, j_end - j);
      while (x.size() > 1 && x[0] == '0') x.remove_prefix(1);
      while (y.size() > 1 && y[0] == '0') y.remove_prefix(1);
      if (x.size() != y.size()) return x.size() < y.size();
      if (x != y) return x < y;
      i = i_end;
      j = j_end;
    } else {
      if (a[i] != b[j]) return a[i] < b[j];
      ++i;
      ++j;
    }
  }
  return a.size() - i < b.size() - j;
}

}  // namespace ft
