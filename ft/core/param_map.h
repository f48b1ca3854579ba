// ParamMap: an ordered map from Hugging Face style dotted names to arrays.
//
// Model parameters, gradients and optimizer state are all ParamMaps, so saving,
// loading, freezing and exporting need no renaming tables.
#pragma once

#include <functional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include <mlx/array.h>  // defines: mlx::core::array

namespace ft {

namespace mx = mlx::core;

class ParamMap {
 public:
  using Entry = std::pair<std::string, mx::array>;

  ParamMap() = default;
  ParamMap(std::initializer_list<Entry> entries);

  // Inserts at the end, or replaces the value in place when the name exists.
  void set(const std::string& name, const mx::array& value);
  // Throws ft::Error naming the missing key.
  const mx::array& at(const std::string& name) const;
  mx::array& at(const std::string& name);
  const mx::array* find(const std::string& name) const;
  bool contains(const std::string& name) const { return index_.count(name) > 0; }
  bool erase(const std::string& name);

  size_t size() const { return entries_.size(); }
  bool empty() const { return entries_.empty(); }
  auto begin() const { return entries_.begin(); }
  auto end() const { return entries_.end(); }
  auto begin() { return entries_.begin(); }
  auto end() { return entries_.end(); }

  std::vector<std::string> names() const;
  std::vector<mx::array> arrays() const;
  // Builds a map with these names (in order) and values.
  static ParamMap zip(const std::vector<std::string>& names, const std::vector<mx::array>& arrays);

  // Entries whose names match the ECMAScript regex (anywhere in the name).
  ParamMap filter(const std::string& regex) const;
  ParamMap filter(const std::function<bool(const std::string&, const mx::array&)>& keep) const;
  // Names prefixed with "prefix." (or without the prefix, for strip_prefix).
  ParamMap with_prefix(const std::string& prefix) const;
  ParamMap strip_prefix(const std::string& prefix) const;

  // Total element count.
  size_t numel() const;
  // Evaluates every array.
  void eval() const;

  // safetensors on disk; metadata is the file's string map.
  void save_safetensors(const std::string& path,
                        const std::unordered_map<std::string, std::string>& metadata = {}) const;
  static ParamMap load_safetensors(
      const std::string& path, std::unordered_map<std::string, std::string>* metadata = nullptr);

 private:
  std::vector<Entry> entries_;
  std::unordered_map<std::string, size_t> index_;
};

// Applies fn to every array, keeping names.
ParamMap tree_map(const ParamMap& a, const std::function<mx::array(const mx::array&)>& fn);
// Applies fn to arrays of the same name in a and b; b must hold every name of a.
ParamMap tree_map(const ParamMap& a, const ParamMap& b,
                  const std::function<mx::array(const mx::array&, const mx::array&)>& fn);

// Orders names the way people read them: "layers.2" before "layers.10".
bool natural_less(const std::string& a, const std::string& b);

}  // namespace ft
