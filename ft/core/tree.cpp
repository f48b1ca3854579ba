#include "ft/core/tree.h"

#include <algorithm>

#include "ft/core/error.h"

namespace ft {
namespace {

bool is_index(const std::string& key) {
  return !key.empty() &&
         std::all_of(key.begin(), key.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// Builds a node from (remaining path, value) pairs that share a prefix.
Tree build(const std::vector<std::pair<std::vector<std::string>, mx::array>>& items, size_t depth,
           const std::string& where) {
  if (items.size() == 1 && items[0].first.size() == depth) return Tree{items[0].second};
  std::map<std::string, std::vector<std::pair<std::vector<std::string>, mx::array>>> groups;
  bool all_index = true;
  for (const auto& item : items) {
    FT_CHECK(item.first.size() > depth, "tree", "'", where, "' is both a parameter and a branch");
    const auto& key = item.first[depth];
    all_index = all_index && is_index(key);
    groups[key].push_back(item);
  }
  auto child_where = [&](const std::string& key) {
    return where.empty() ? key : where + "." + key;
  };
  if (all_index) {
    Tree::List list(groups.size());
    for (auto& [key, group] : groups) {
      size_t i = std::stoul(key);
      FT_CHECK(i < list.size(), "tree", "list '", where, "' has holes: index ", i, " of ",
               groups.size(), " entries");
      list[i] = build(group, depth + 1, child_where(key));
    }
    return Tree{std::move(list)};
  }
  Tree::Dict dict;
  for (auto& [key, group] : groups) dict.emplace(key, build(group, depth + 1, child_where(key)));
  return Tree{std::move(dict)};
}

void flatten_into(const Tree& tree, const std::string& prefix, ParamMap& out) {
  auto join = [&](const std::string& key) { return prefix.empty() ? key : prefix + "." + key; };
  if (tree.is_leaf()) {
    FT_CHECK(!prefix.empty(), "tree", "a bare array has no name to flatten to");
    out.set(prefix, tree.leaf());
  } else if (tree.is_dict()) {
    for (const auto& [key, child] : tree.dict()) flatten_into(child, join(key), out);
  } else if (tree.is_list()) {
    for (size_t i = 0; i < tree.list().size(); ++i)
      flatten_into(tree.list()[i], join(std::to_string(i)), out);
  }
}

}  // namespace

Tree tree_unflatten(const ParamMap& flat) {
  if (flat.empty()) return Tree{Tree::Dict{}};
  std::vector<std::pair<std::vector<std::string>, mx::array>> items;
  for (const auto& [name, value] : flat) {
    std::vector<std::string> parts;
    size_t start = 0;
    while (true) {
      size_t dot = name.find('.', start);
      parts.push_back(name.substr(start, dot - start));
      FT_CHECK(!parts.back().empty(), "tree", "name '", name, "' has an empty part");
      if (dot == std::string::npos) break;
      start = dot + 1;
    }
    items.emplace_back(std::move(parts), value);
  }
  return build(items, 0, "");
}

ParamMap tree_flatten(const Tree& tree, const std::string& prefix) {
  ParamMap out;
  flatten_into(tree, prefix, out);
  return out;
}

}  // namespace ft
