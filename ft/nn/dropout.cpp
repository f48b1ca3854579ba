#include "ft/nn/dropout.h"

#include <vector>

#include <mlx/ops.h>
#include <mlx/random.h>

namespace ft::nn {
namespace {

float checked_p(float p) {
  FT_CHECK(p >= 0.0f && p < 1.0f, "dropout", "p must be in [0, 1), got ", p);
  return p;
}

const mx::array& checked_key(const mx::array& key) {
  FT_CHECK(key.dtype() == mx::uint32 && key.shape() == mx::Shape{2}, "dropout",
           "a key is a (2,) uint32 array");
  return key;
}

}  // namespace

Dropout::Dropout(float p, uint64_t seed) : p_(checked_p(p)), key_(mx::random::key(seed)) {}

Dropout::Dropout(float p, const mx::array& key) : p_(checked_p(p)), key_(checked_key(key)) {}

mx::array Dropout::operator()(const mx::array& x) {
  if (!active()) return x;
  auto [next, key] = mx::random::split(key_);
  key_ = next;
  return (*this)(x, key);
}

mx::array Dropout::operator()(const mx::array& x, const mx::array& key) const {
  if (!active()) return x;
  auto keep = mx::random::bernoulli(1.0f - p_, x.shape(), key);
  auto scale = mx::array(1.0f / (1.0f - p_), x.dtype());
  return mx::where(keep, mx::multiply(x, scale), mx::zeros_like(x));
}

void Dropout::reseed(const mx::array& key) {
  key_ = checked_key(key);
}

void reseed_dropout(Module& root, const mx::array& key) {
  std::vector<Dropout*> dropouts;
  for (auto& [path, module] : root.named_modules())
    if (auto* dropout = dynamic_cast<Dropout*>(module)) dropouts.push_back(dropout);
  if (dropouts.empty()) return;
  auto keys = mx::random::split(key, static_cast<int>(dropouts.size()));  // (n, 2)
  for (size_t i = 0; i < dropouts.size(); ++i)
    dropouts[i]->reseed(mx::take(keys, static_cast<int>(i), 0));
}

}  // namespace ft::nn
