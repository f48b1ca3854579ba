#include "ft/nn/experts.h"

#include <algorithm>
#include <utility>

#include <mlx/ops.h>

#include "ft/core/error.h"
#include "ft/nn/quantized_linear.h"  // defines: check_quantization

namespace ft::nn {

mx::array gather_matmul_t(const mx::array& x, const mx::array& w, const mx::array& indices,
                          bool sorted) {
  mx::array wt = mx::swapaxes(w, -1, -2);
  if (mx::default_device() == mx::Device::cpu && x.dtype() != mx::float32) {
    mx::array y = mx::gather_mm(mx::astype(x, mx::float32), mx::astype(wt, mx::float32),
                                std::nullopt, indices, sorted);
    return mx::astype(y, x.dtype());
  }
  return mx::gather_mm(x, wt, std::nullopt, indices, sorted);
}

StackedWeight StackedWeight::floats(mx::array weight) {
  FT_CHECK(weight.ndim() == 3, "experts", "stacked expert weights are (experts, out, in), got ",
           weight.ndim(), "-D");
  FT_CHECK(mx::issubdtype(weight.dtype(), mx::floating), "experts",
           "stacked expert weights must be floating point");
  StackedWeight s;
  s.weight = std::move(weight);
  return s;
}

StackedWeight StackedWeight::quantized(const mx::array& w, int group_size, int bits) {
  FT_CHECK(w.ndim() == 3, "experts", "stacked expert weights are (experts, out, in), got ",
           w.ndim(), "-D");
  check_quantization("experts", w.shape(2), group_size, bits);
  auto packed = mx::quantize(w, group_size, bits);
  StackedWeight s;
  s.weight = packed[0];
  s.scales = packed[1];
  s.biases = packed[2];
  s.group_size = group_size;
  s.bits = bits;
  return s;
}

StackedWeight StackedWeight::zeros_quantized(int experts, int out, int in, int group_size, int bits,
                                             mx::Dtype dtype) {
  FT_CHECK(experts > 0 && out > 0, "experts", "stacked expert weights need positive sizes, got (",
           experts, ", ", out, ", ", in, ")");
  check_quantization("experts", in, group_size, bits);
  StackedWeight s;
  s.weight = mx::zeros({experts, out, in * bits / 32}, mx::uint32);
  s.scales = mx::zeros({experts, out, in / group_size}, dtype);
  s.biases = mx::zeros({experts, out, in / group_size}, dtype);
  s.group_size = group_size;
  s.bits = bits;
  return s;
}

mx::array StackedWeight::dequantized() const {
  if (!is_quantized()) return weight;
  return mx::dequantize(weight, *scales, biases, group_size, bits);
}

mx::array StackedWeight::project(const mx::array& x, const mx::array& indices, bool sorted) const {
  if (!is_quantized()) return gather_matmul_t(x, weight, indices, sorted);
  return mx::gather_qmm(mx::astype(x, dtype()), weight, *scales, biases, std::nullopt, indices,
                        /*transpose=*/true, group_size, bits, "affine", std::nullopt, sorted);
}

std::vector<std::string> ExpertWeights::stacked_names() const {
  std::vector<std::string> out;
  for (const auto& e : entries_) out.push_back(e->name);
  return out;
}

ExpertWeights::Entry& ExpertWeights::entry(const std::string& name) {
  return const_cast<Entry&>(std::as_const(*this).entry(name));
}

const ExpertWeights::Entry& ExpertWeights::entry(const std::string& name) const {
  for (const auto& e : entries_)
    if (e->name == name) return *e;
  std::string names;
  for (const auto& e : entries_) names += (names.empty() ? "" : ", ") + e->name;
  throw Error("experts", "no stacked expert parameter '" + name + "' (" + names + ")");
}

const StackedWeight& ExpertWeights::stacked(const std::string& name) const {
  return entry(name).weight;
}

std::shared_ptr<ExpertLoRA>& ExpertWeights::adapter(const std::string& name) {
  return entry(name).adapter;
}

const std::shared_ptr<ExpertLoRA>& ExpertWeights::adapter(const std::string& name) const {
  return entry(name).adapter;
}

void ExpertWeights::register_arrays(Entry& e) {
  register_parameter(e.name, &e.weight.weight);
  if (!e.weight.is_quantized()) return;
  register_parameter(e.name + "_scales", &*e.weight.scales);
  register_parameter(e.name + "_biases", &*e.weight.biases);
  freeze("^" + e.name + "(_scales|_biases)?$");
}

void ExpertWeights::add_stacked(const std::string& name, StackedWeight weight) {
  FT_ASSERT(std::none_of(entries_.begin(), entries_.end(),
                         [&](const auto& e) { return e->name == name; }));
  entries_.push_back(std::make_unique<Entry>(Entry{name, std::move(weight), nullptr}));
  Entry& e = *entries_.back();
  register_arrays(e);
  register_module(name, &e.adapter);
}

void ExpertWeights::set_stacked(const std::string& name, StackedWeight weight) {
  Entry& e = entry(name);
  const StackedWeight& old = e.weight;
  FT_CHECK(weight.experts() == old.experts() && weight.out_features() == old.out_features() &&
               weight.in_features() == old.in_features(),
           "experts", "'", name, "' is (", old.experts(), ", ", old.out_features(), ", ",
           old.in_features(), "); the new weight is (", weight.experts(), ", ",
           weight.out_features(), ", ", weight.in_features(), ")");
  if (weight.is_quantized() == old.is_quantized()) {
    // The same arrays are registered: the members keep their addresses.
    e.weight = std::move(weight);
    return;
  }
  const bool frozen = !old.is_quantized() && is_frozen(name);
  for (const char* suffix : {"", "_scales", "_biases"}) unregister_parameter(name + suffix);
  e.weight = std::move(weight);
  register_arrays(e);
  if (frozen) freeze("^" + name + "$");
}

mx::array ExpertWeights::project(const std::string& name, const mx::array& x,
                                 const mx::array& indices, bool sorted) const {
  const Entry& e = entry(name);
  mx::array y = e.weight.project(x, indices, sorted);
  if (!e.adapter) return y;
  return y + mx::astype((*e.adapter)(x, indices, sorted), y.dtype());
}

}  // namespace ft::nn
