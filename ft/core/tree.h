// Nested parameter trees and their flat, dotted-name form.
//
// "layers.0.mlp.up.weight" flattens from {"layers": [{"mlp": {"up": {"weight": w}}}]}:
// a key made only of digits is a list index, anything else a dict key.
#pragma once

#include <map>
#include <string>
#include <variant>
#include <vector>

#include "ft/core/param_map.h"

namespace ft {

struct Tree {
  using Dict = std::map<std::string, Tree>;
  using List = std::vector<Tree>;
  std::variant<std::monostate, mx::array, Dict, List> node;

  bool is_leaf() const { return std::holds_alternative<mx::array>(node); }
  bool is_dict() const { return std::holds_alternative<Dict>(node); }
  bool is_list() const { return std::holds_alternative<List>(node); }
  const mx::array& leaf() const { return std::get<mx::array>(node); }
  const Dict& dict() const { return std::get<Dict>(node); }
  const List& list() const { return std::get<List>(node); }
};

// Flat names to a nested tree. Throws ft::Error when a name is both a leaf and a
// branch ("a" and "a.b"), or a list has holes ("l.0", "l.2").
Tree tree_unflatten(const ParamMap& flat);
// A nested tree to flat names in tree order (lists by index, dicts by key).
ParamMap tree_flatten(const Tree& tree, const std::string& prefix = "");

}  // namespace ft
