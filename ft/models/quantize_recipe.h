// Quantization recipes: which bits and group size each layer of a model gets, by layer
// range and module name, as `ft quantize --recipe FILE` reads them (docs/models.md,
// "Quantizing a model").
//
// A recipe is a YAML (or JSON) mapping: optional defaults "bits" and "group_size", and
// "rules", a list of one-line rules tried in order, the first that matches a module
// deciding it:
//
//   bits: 4
//   group_size: 64
//   rules:
//     - layers=0-3 module=self_attn bits=8     # attention of the first four layers
//     - module=embed_tokens,lm_head bits=6 group_size=32
//     - regex=mlp\.down_proj$ float            # kept in floats
//
// A rule is words separated by spaces: selectors, all of which must hold (layers=N or
// layers=A-B, the module's layer number; module=NAME[,NAME...], a run of the path's
// dotted components such as self_attn, mlp.down_proj or lm_head; regex=RE, an ECMAScript
// regular expression of at most 256 characters searched in the path), and the setting
// (bits=B and/or group_size=G, the rest taken from the defaults, or the word float). A
// module no rule matches gets the defaults.
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ft/core/regex.h"  // defines: Regex
#include "ft/io/model_folder.h"

namespace ft::models {

struct QuantRule {
  std::string text;                           // the rule as written, for messages
  std::optional<std::pair<int, int>> layers;  // first and last layer, inclusive
  std::vector<std::string> modules;           // any one of these dotted names
  std::shared_ptr<const Regex> regex;         // null: no regex selector
  std::optional<int> bits;
  std::optional<int> group_size;
  bool keep_float = false;

  // Whether every selector holds for a module path ("model.layers.3.self_attn.q_proj").
  bool matches(const std::string& path) const;
};

struct QuantRecipe {
  std::string source;  // the file, for messages
  std::optional<int> bits;
  std::optional<int> group_size;
  std::vector<QuantRule> rules;
};

// Throws ft::Error("recipe", ...) naming the file (and the rule, by number and text) for
// an unreadable file, YAML that is not a mapping of scalars and lists, an unknown key,
// bits other than 2, 3, 4, 5, 6, 8 or a group size other than 32, 64, 128, and a rule
// that does not parse: an unknown word, a bad layer range or regular expression, no
// selector, no setting, or float with bits or group_size.
QuantRecipe read_quant_recipe(const std::filesystem::path& file);
QuantRecipe parse_quant_recipe(std::string_view text, const std::string& name_for_errors);

// The layer number of a module path: its first all-digit component ("model.layers.3.mlp"
// -> 3); nullopt when it has none.
std::optional<int> layer_of(const std::string& path);

// Each path's spec under the recipe, with `defaults` where no rule matches: the result's
// defaults and, in modules, every path whose spec differs from them (nullopt: kept in
// floats). Throws ft::Error naming the file and the rule when a rule matches none of the
// paths (a misspelt module name, a layer past the model's).
io::QuantizationConfig plan_quantization(const QuantRecipe& recipe, const io::QuantSpec& defaults,
                                         const std::vector<std::string>& paths);

}  // namespace ft::models
