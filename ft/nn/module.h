// Module: a tree of named parameters and child modules.
//
// A module's parameters flatten to a ParamMap keyed by dotted names
// ("layers.0.self_attn.q_proj.weight"). Layers keep their arrays as plain members
// and register pointers to them, so a layer reads `weight_` and the tree can still
// swap every value at once (update) for value_and_grad, loading or optimizer steps.
#pragma once

#include <functional>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <mlx/array.h>

#include "ft/core/error.h"
#include "ft/core/param_map.h"

namespace ft::nn {

namespace mx = mlx::core;

class Module {
 public:
  Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;
  virtual ~Module() = default;

  // The layer's type for messages and summaries, e.g. "Linear".
  virtual std::string type_name() const { return "Module"; }

  // Every parameter of this module and its children, in registration order.
  ParamMap parameters() const;
  // Parameters that are not frozen.
  ParamMap trainable_parameters() const;
  size_t num_parameters() const { return parameters().numel(); }
  size_t num_trainable_parameters() const { return trainable_parameters().numel(); }

  // Replaces values by name, without shape checks: this is how a function traced by
  // value_and_grad or compile sees its inputs. Unknown names are an ft::Error.
  void update(const ParamMap& values);
  // Loads values with checks. Every problem (missing names, unexpected names, wrong
  // shapes, wrong dtypes) is collected into one ft::Error. strict=false allows a
  // subset and ignores unexpected names; shapes and dtypes are always checked.
  void load(const ParamMap& values, bool strict = true);
  void load_safetensors(const std::string& path, bool strict = true);
  void save_safetensors(const std::string& path) const;

  // Casts floating-point parameters (not quantized integers) to dtype.
  void cast(mx::Dtype dtype);

  // Train mode turns on dropout; it applies to the whole subtree.
  void train(bool on = true);
  void eval() { train(false); }
  bool training() const { return training_; }

  // Freezing excludes parameters from trainable_parameters(). The regex forms match
  // full dotted names (ft::Regex::search) and throw ft::Error on a bad regex.
  void freeze();
  void unfreeze();
  void freeze(const std::string& regex);
  void unfreeze(const std::string& regex);
  bool is_frozen(const std::string& name) const;

  // This module ("") and all descendants with their dotted paths, depth first.
  std::vector<std::pair<std::string, Module*>> named_modules();
  std::vector<std::pair<std::string, const Module*>> named_modules() const;
  // The direct children, in registration order.
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children() const;
  // A descendant by dotted path; nullptr when absent.
  std::shared_ptr<Module> find_module(const std::string& path) const;
  // Replaces the descendant at a dotted path; throws ft::Error when the path is
  // unknown or the new module does not fit the slot's type.
  void replace_module(const std::string& path, std::shared_ptr<Module> module);

 protected:
  // Registers a parameter held in a member of the subclass (it must outlive us).
  void register_parameter(const std::string& name, mx::array* slot);
  // Removes a registered parameter (and its frozen mark); absent names are ignored. For
  // a layer whose storage changes form (nn::ExpertWeights' floats and quantized arrays).
  void unregister_parameter(const std::string& name);
  // Registers `other`'s own parameters (not its children's) under the same names.
  // The slots stay in `other`, which this module must keep alive: a LoRA wrapper
  // shows its base layer's "weight" as its own, so Hugging Face names survive.
  void adopt_parameters(const Module& other);
  // Registers a child held in a member `std::shared_ptr<T>`; replace_module writes
  // into that member, so a LoRA wrapper can take the place of a Linear.
  template <typename T>
  void register_module(const std::string& name, std::shared_ptr<T>* slot) {
    ChildSlot child;
    child.name = name;
    child.get = [slot]() -> std::shared_ptr<Module> { return *slot; };
    child.set = [slot, name](std::shared_ptr<Module> module) {
      auto typed = std::dynamic_pointer_cast<T>(module);
      FT_CHECK(typed != nullptr, "module", "a ", module ? module->type_name() : "null",
               " cannot take the place of '", name, "'");
      *slot = std::move(typed);
    };
    children_.push_back(std::move(child));
  }
  // Called when train()/eval() changes the mode of this module.
  virtual void on_mode_change() {}

 private:
  struct ChildSlot {
    std::string name;
    std::function<std::shared_ptr<Module>()> get;
    std::function<void(std::shared_ptr<Module>)> set;
  };
  // Visits (dotted name, slot, frozen) of every parameter in the subtree.
  void visit_parameters(const std::string& prefix,
                        const std::function<void(const std::string&, mx::array*, bool)>& fn) const;
  void set_frozen(bool frozen, const std::function<bool(const std::string&)>& match,
                  const std::string& prefix);

  std::vector<std::pair<std::string, mx::array*>> params_;
  std::vector<ChildSlot> children_;
  std::set<std::string> frozen_;  // local parameter names
  bool training_ = true;
};

// A module with one input and one output: Linear, its quantized and LoRA forms,
// norms, embeddings.
class Layer : public Module {
 public:
  virtual mx::array operator()(const mx::array& x) = 0;
};

// A list of modules whose children are named "0", "1", ...
template <typename T>
class ModuleList : public Module {
 public:
  std::string type_name() const override { return "ModuleList"; }
  void push_back(std::shared_ptr<T> module) {
    // Slots live in a deque-like stable store: reserve is not enough, so hold them boxed.
    items_.push_back(std::make_unique<std::shared_ptr<T>>(std::move(module)));
    register_module(std::to_string(items_.size() - 1), items_.back().get());
  }
  size_t size() const { return items_.size(); }
  T& operator[](size_t i) { return **items_[i]; }
  const T& operator[](size_t i) const { return **items_[i]; }

 private:
  std::vector<std::unique_ptr<std::shared_ptr<T>>> items_;
};

}  // namespace ft::nn
