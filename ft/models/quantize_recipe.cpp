#include "ft/models/quantize_recipe.h"

#include <cctype>
#include <fstream>
#include <sstream>

#include "ft/core/error.h"
#include "ft/io/options_file.h"

namespace ft::models {

namespace {

constexpr const char* kPlace = "recipe";

std::vector<std::string> split(const std::string& text, char sep) {
  std::vector<std::string> out;
  std::string part;
  std::istringstream in(text);
  while (std::getline(in, part, sep)) out.push_back(part);
  return out;
}

bool all_digits(const std::string& s) {
  if (s.empty() || s.size() > 9) return false;
  for (char c : s)
    if (!std::isdigit(static_cast<unsigned char>(c))) return false;
  return true;
}

// The same sets as nn::check_quantization, worded for a recipe.
int parse_bits(const std::string& value, const std::string& where) {
  FT_CHECK(all_digits(value), kPlace, where, ": bits must be 2, 3, 4, 5, 6 or 8, got '", value,
           "'");
  const int bits = std::stoi(value);
  FT_CHECK(bits == 2 || bits == 3 || bits == 4 || bits == 5 || bits == 6 || bits == 8, kPlace,
           where, ": bits must be 2, 3, 4, 5, 6 or 8, got ", bits);
  return bits;
}

int parse_group_size(const std::string& value, const std::string& where) {
  FT_CHECK(all_digits(value), kPlace, where, ": group_size must be 32, 64 or 128, got '", value,
           "'");
  const int group_size = std::stoi(value);
  FT_CHECK(group_size == 32 || group_size == 64 || group_size == 128, kPlace, where,
           ": group_size must be 32, 64 or 128, got ", group_size);
  return group_size;
}

std::pair<int, int> parse_layers(const std::string& value, const std::string& where) {
  const size_t dash = value.find('-');
  const std::string first = value.substr(0, dash);
  const std::string last = dash == std::string::npos ? first : value.substr(dash + 1);
  FT_CHECK(all_digits(first) && all_digits(last), kPlace, where,
           ": layers must be N or A-B (layer numbers from 0), got '", value, "'");
  const int a = std::stoi(first), b = std::stoi(last);
  FT_CHECK(a <= b, kPlace, where, ": layers ", value, " is an empty range");
  return {a, b};
}

QuantRule parse_rule(const std::string& text, const std::string& where) {
  QuantRule rule;
  rule.text = text;
  std::istringstream words(text);
  std::string word;
  while (words >> word) {
    if (word == "float") {
      rule.keep_float = true;
      continue;
    }
    const size_t eq = word.find('=');
    FT_CHECK(eq != std::string::npos && eq > 0 && eq + 1 < word.size(), kPlace, where, ": '", word,
             "' is not a selector (layers=, module=, regex=) or a setting (bits=, group_size=, "
             "float)");
    const std::string key = word.substr(0, eq), value = word.substr(eq + 1);
    if (key == "layers") {
      rule.layers = parse_layers(value, where);
    } else if (key == "module") {
      for (const auto& name : split(value, ',')) {
        FT_CHECK(!name.empty() && name.front() != '.' && name.back() != '.', kPlace, where,
                 ": module '", value, "' needs names like self_attn or mlp.down_proj");
        rule.modules.push_back(name);
      }
    } else if (key == "regex") {
      try {
        rule.regex = std::make_shared<const Regex>(value, kPlace);
      } catch (const Error& e) {
        throw Error(kPlace, where + ": " + e.fact());
      }
    } else if (key == "bits") {
      rule.bits = parse_bits(value, where);
    } else if (key == "group_size") {
      rule.group_size = parse_group_size(value, where);
    } else {
      throw Error(kPlace, where + ": unknown key '" + key +
                              "' (known: layers, module, regex, bits, group_size, float)");
    }
  }
  FT_CHECK(rule.layers || !rule.modules.empty() || rule.regex, kPlace, where,
           ": names no module: give layers=, module= or regex=");
  FT_CHECK(rule.keep_float || rule.bits || rule.group_size, kPlace, where,
           ": says nothing to do: give bits=, group_size= or float");
  FT_CHECK(!rule.keep_float || (!rule.bits && !rule.group_size), kPlace, where,
           ": float keeps the module unquantized and takes no bits= or group_size=");
  return rule;
}

// Whether names (split at dots) occur as a run of consecutive components of parts.
bool has_run(const std::vector<std::string>& parts, const std::vector<std::string>& names) {
  if (names.empty() || names.size() > parts.size()) return false;
  for (size_t i = 0; i + names.size() <= parts.size(); ++i) {
    size_t k = 0;
    while (k < names.size() && parts[i + k] == names[k]) ++k;
    if (k == names.size()) return true;
  }
  return false;
}

}  // namespace

bool QuantRule::matches(const std::string& path) const {
  if (layers) {
    const std::optional<int> layer = layer_of(path);
    if (!layer || *layer < layers->first || *layer > layers->second) return false;
  }
  if (!modules.empty()) {
    const std::vector<std::string> parts = split(path, '.');
    bool any = false;
    for (const auto& name : modules) any = any || has_run(parts, split(name, '.'));
    if (!any) return false;
  }
  return !regex || regex->search(path);
}

std::optional<int> layer_of(const std::string& path) {
  for (const auto& part : split(path, '.'))
    if (all_digits(part)) return std::stoi(part);
  return std::nullopt;
}

QuantRecipe parse_quant_recipe(std::string_view text, const std::string& name_for_errors) {
  std::vector<io::OptionEntry> entries;
  try {
    entries = io::parse_options_yaml(text, name_for_errors);
  } catch (const Error& e) {
    throw Error(kPlace, e.fact());
  }
  QuantRecipe recipe;
  recipe.source = name_for_errors;
  bool has_rules = false;
  for (const auto& entry : entries) {
    const std::string where = name_for_errors + ": " + entry.key;
    auto scalar = [&] {
      FT_CHECK(entry.values.size() == 1, kPlace, where, " takes one value");
      return entry.values.front();
    };
    if (entry.key == "bits") {
      recipe.bits = parse_bits(scalar(), where);
    } else if (entry.key == "group_size") {
      recipe.group_size = parse_group_size(scalar(), where);
    } else if (entry.key == "rules") {
      has_rules = true;
      for (const auto& text : entry.values)
        recipe.rules.push_back(parse_rule(
            text,
            detail::concat(name_for_errors, ": rule ", recipe.rules.size() + 1, " '", text, "'")));
    } else {
      throw Error(kPlace, name_for_errors + ": unknown key '" + entry.key +
                              "' (known: bits, group_size, rules)");
    }
  }
  FT_CHECK(has_rules && !recipe.rules.empty(), kPlace, name_for_errors,
           ": names no module: give \"rules\", a list such as [\"layers=0-3 module=self_attn "
           "bits=8\"]");
  return recipe;
}

QuantRecipe read_quant_recipe(const std::filesystem::path& file) {
  std::error_code ec;
  FT_CHECK(std::filesystem::is_regular_file(file, ec), kPlace, file.string(), ": no such file");
  std::ifstream in(file, std::ios::binary);
  FT_CHECK(in, kPlace, file.string(), ": cannot open");
  std::ostringstream text;
  text << in.rdbuf();
  return parse_quant_recipe(text.str(), file.string());
}

io::QuantizationConfig plan_quantization(const QuantRecipe& recipe, const io::QuantSpec& defaults,
                                         const std::vector<std::string>& paths) {
  io::QuantizationConfig plan;
  plan.defaults = defaults;
  std::vector<bool> used(recipe.rules.size(), false);
  for (const auto& path : paths) {
    for (size_t i = 0; i < recipe.rules.size(); ++i) {
      const QuantRule& rule = recipe.rules[i];
      if (!rule.matches(path)) continue;
      used[i] = true;
      if (rule.keep_float) {
        plan.modules[path] = std::nullopt;
      } else {
        io::QuantSpec spec{.group_size = rule.group_size.value_or(defaults.group_size),
                           .bits = rule.bits.value_or(defaults.bits)};
        if (spec.group_size != defaults.group_size || spec.bits != defaults.bits)
          plan.modules[path] = spec;
      }
      break;
    }
  }
  // A rule shadowed by earlier ones still counts: it names modules the model has.
  for (size_t i = 0; i < recipe.rules.size(); ++i) {
    if (used[i]) continue;
    for (const auto& path : paths) used[i] = used[i] || recipe.rules[i].matches(path);
    FT_CHECK(used[i], kPlace, recipe.source, ": rule ", i + 1, " '", recipe.rules[i].text,
             "' matches no Linear, Embedding or expert weight of the model (",
             paths.empty() ? std::string("it has none") : "such as '" + paths.front() + "'", ")");
  }
  return plan;
}

}  // namespace ft::models
