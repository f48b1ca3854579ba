#include "ft/nn/module.h"

#include <sstream>

#include <mlx/ops.h>

#include "ft/core/regex.h"  // defines: Regex

namespace ft::nn {
namespace {

std::string join(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "." + name;
}

std::string shape_string(const mx::Shape& shape) {
  std::ostringstream out;
  out << "(";
  for (size_t i = 0; i < shape.size(); ++i) out << (i ? ", " : "") << shape[i];
  out << (shape.size() == 1 ? ",)" : ")");
  return out.str();
}

}  // namespace

void Module::register_parameter(const std::string& name, mx::array* slot) {
  FT_ASSERT(slot != nullptr);
  FT_ASSERT(name.find('.') == std::string::npos);
  params_.emplace_back(name, slot);
}

void Module::unregister_parameter(const std::string& name) {
  std::erase_if(params_, [&](const auto& entry) { return entry.first == name; });
  frozen_.erase(name);
}

void Module::adopt_parameters(const Module& other) {
  for (const auto& [name, slot] : other.params_) register_parameter(name, slot);
}

void Module::visit_parameters(
    const std::string& prefix,
    const std::function<void(const std::string&, mx::array*, bool)>& fn) const {
  for (const auto& [name, slot] : params_) fn(join(prefix, name), slot, frozen_.count(name) > 0);
  for (const auto& child : children_)
    if (auto module = child.get()) module->visit_parameters(join(prefix, child.name), fn);
}

ParamMap Module::parameters() const {
  ParamMap out;
  visit_parameters("",
                   [&](const std::string& name, mx::array* slot, bool) { out.set(name, *slot); });
  return out;
}

ParamMap Module::trainable_parameters() const {
  ParamMap out;
  visit_parameters("", [&](const std::string& name, mx::array* slot, bool frozen) {
    if (!frozen) out.set(name, *slot);
  });
  return out;
}

void Module::update(const ParamMap& values) {
  size_t matched = 0;
  visit_parameters("", [&](const std::string& name, mx::array* slot, bool) {
    if (const mx::array* value = values.find(name)) {
      *slot = *value;
      ++matched;
    }
  });
  if (matched != values.size()) {
    auto own = parameters();
    for (const auto& [name, value] : values)
      FT_CHECK(own.contains(name), "module", "update: no parameter named '", name, "'");
  }
}

void Module::load(const ParamMap& values, bool strict) {
  std::vector<std::string> problems;
  size_t matched = 0;
  visit_parameters("", [&](const std::string& name, mx::array* slot, bool) {
    const mx::array* value = values.find(name);
    if (!value) {
      if (strict) problems.push_back("missing '" + name + "'");
      return;
    }
    ++matched;
    if (value->shape() != slot->shape()) {
      problems.push_back("'" + name + "' has shape " + shape_string(value->shape()) +
                         ", expected " + shape_string(slot->shape()));
    } else if (value->dtype() != slot->dtype()) {
      std::ostringstream out;
      out << "'" << name << "' has dtype " << value->dtype() << ", expected " << slot->dtype();
      problems.push_back(out.str());
    }
  });
  if (strict && matched != values.size()) {
    auto own = parameters();
    for (const auto& [name, value] : values)
      if (!own.contains(name)) problems.push_back("unexpected '" + name + "'");
  }
  if (!problems.empty()) {
    std::string message = std::to_string(problems.size()) + " problem" +
                          (problems.size() == 1 ? "" : "s") + " loading parameters: ";
    for (size_t i = 0; i < problems.size(); ++i) message += (i ? "; " : "") + problems[i];
    throw Error("module", message);
  }
  visit_parameters("", [&](const std::string& name, mx::array* slot, bool) {
    if (const mx::array* value = values.find(name)) *slot = *value;
  });
}

void Module::load_safetensors(const std::string& path, bool strict) {
  try {
    load(ParamMap::load_safetensors(path), strict);
  } catch (const Error& e) {
    if (e.place() == "module") throw Error("module", path + ": " + e.fact());
    throw;
  }
}

void Module::save_safetensors(const std::string& path) const {
  parameters().save_safetensors(path);
}

void Module::cast(mx::Dtype dtype) {
  visit_parameters("", [&](const std::string&, mx::array* slot, bool) {
    if (mx::issubdtype(slot->dtype(), mx::floating)) *slot = mx::astype(*slot, dtype);
  });
}

void Module::train(bool on) {
  bool changed = training_ != on;
  training_ = on;
  if (changed) on_mode_change();
  for (const auto& child : children_)
    if (auto module = child.get()) module->train(on);
}

void Module::set_frozen(bool frozen, const std::function<bool(const std::string&)>& match,
                        const std::string& prefix) {
  for (const auto& [name, slot] : params_) {
    if (!match(join(prefix, name))) continue;
    if (frozen)
      frozen_.insert(name);
    else
      frozen_.erase(name);
  }
  for (const auto& child : children_)
    if (auto module = child.get()) module->set_frozen(frozen, match, join(prefix, child.name));
}

void Module::freeze() {
  set_frozen(
      true, [](const std::string&) { return true; }, "");
}
void Module::unfreeze() {
  set_frozen(
      false, [](const std::string&) { return true; }, "");
}

void Module::freeze(const std::string& regex) {
  const Regex re(regex, "module");
  set_frozen(
      true, [&](const std::string& name) { return re.search(name); }, "");
}

void Module::unfreeze(const std::string& regex) {
  const Regex re(regex, "module");
  set_frozen(
      false, [&](const std::string& name) { return re.search(name); }, "");
}

bool Module::is_frozen(const std::string& name) const {
  bool found = false, frozen = false;
  visit_parameters("", [&](const std::string& n, mx::array*, bool f) {
    if (n == name) found = true, frozen = f;
  });
  FT_CHECK(found, "module", "no parameter named '", name, "'");
  return frozen;
}

std::vector<std::pair<std::string, Module*>> Module::named_modules() {
  std::vector<std::pair<std::string, Module*>> out{{"", this}};
  for (const auto& child : children_) {
    auto module = child.get();
    if (!module) continue;
    // The child's own entry has path "": its full path is just its name.
    for (auto& [path, m] : module->named_modules())
      out.emplace_back(path.empty() ? child.name : child.name + "." + path, m);
  }
  return out;
}

std::vector<std::pair<std::string, const Module*>> Module::named_modules() const {
  std::vector<std::pair<std::string, const Module*>> out;
  for (auto& [path, m] : const_cast<Module*>(this)->named_modules()) out.emplace_back(path, m);
  return out;
}

std::vector<std::pair<std::string, std::shared_ptr<Module>>> Module::children() const {
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> out;
  for (const auto& child : children_) out.emplace_back(child.name, child.get());
  return out;
}

std::shared_ptr<Module> Module::find_module(const std::string& path) const {
  size_t dot = path.find('.');
  std::string head = path.substr(0, dot);
  for (const auto& child : children_) {
    if (child.name != head) continue;
    auto module = child.get();
    if (dot == std::string::npos || !module) return module;
    return module->find_module(path.substr(dot + 1));
  }
  return nullptr;
}

void Module::replace_module(const std::string& path, std::shared_ptr<Module> module) {
  FT_CHECK(module != nullptr, "module", "cannot put a null module at '", path, "'");
  size_t dot = path.rfind('.');
  Module* parent = this;
  std::shared_ptr<Module> holder;
  if (dot != std::string::npos) {
    holder = find_module(path.substr(0, dot));
    FT_CHECK(holder != nullptr, "module", "no module at '", path.substr(0, dot), "'");
    parent = holder.get();
  }
  std::string leaf = dot == std::string::npos ? path : path.substr(dot + 1);
  for (auto& child : parent->children_) {
    if (child.name != leaf) continue;
    module->train(parent->training_);
    child.set(std::move(module));
    return;
  }
  throw Error("module", "no module at '" + path + "'");
}

}  // namespace ft::nn
