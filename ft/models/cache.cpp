#include "ft/models/cache.h"

#include <algorithm>

#include <mlx/ops.h>

#include "ft/core/error.h"

namespace ft::models {

LayerCache::LayerCache(int step) : step_(step) {
  FT_CHECK(step > 0, "kv_cache", "step must be positive, got ", step);
}

std::pair<mx::array, mx::array> LayerCache::update(const mx::array& keys, const mx::array& values) {
  FT_CHECK(keys.ndim() == 4 && values.ndim() == 4, "kv_cache",
           "keys and values must be (batch, heads, length, head_dim)");
  FT_CHECK(keys.shape(2) == values.shape(2), "kv_cache", "keys hold ", keys.shape(2),
           " positions but values ", values.shape(2));
  int length = keys.shape(2);
  int capacity = keys_ ? keys_->shape(2) : 0;
  if (keys_)
    FT_CHECK(keys_->shape(0) == keys.shape(0) && keys_->shape(1) == keys.shape(1) &&
                 keys_->shape(3) == keys.shape(3) && values_->shape(3) == values.shape(3),
             "kv_cache", "new keys/values do not match the cached batch, heads or head_dim");
  if (offset_ + length > capacity) {
    // Grow by whole steps, enough for this update.
    int grow = (offset_ + length - capacity + step_ - 1) / step_ * step_;
    auto grown = [&](const std::optional<mx::array>& old, const mx::array& update) {
      mx::Shape shape = update.shape();
      shape[2] = grow;
      mx::array extra = mx::zeros(shape, update.dtype());
      if (!old) return extra;
      // Past offset_ the old storage holds nothing of use (after a trim).
      mx::array kept =
          mx::slice(*old, {0, 0, 0, 0}, {old->shape(0), old->shape(1), offset_, old->shape(3)});
      return mx::concatenate({kept, extra}, 2);
    };
    mx::array new_keys = grown(keys_, keys);
    mx::array new_values = grown(values_, values);
    keys_ = new_keys;
    values_ = new_values;
  }
  auto write = [&](mx::array& store, const mx::array& update) {
    mx::Shape start = {0, 0, offset_, 0};
    mx::Shape stop = store.shape();
    stop[2] = offset_ + length;
    store = mx::slice_update(store, mx::astype(update, store.dtype()), start, stop);
  };
  write(*keys_, keys);
  write(*values_, values);
  offset_ += length;
  auto filled = [&](const mx::array& store) {
    return mx::slice(store, {0, 0, 0, 0},
                     {store.shape(0), store.shape(1), offset_, store.shape(3)});
  };
  return {filled(*keys_), filled(*values_)};
}

void LayerCache::trim(int length) {
  FT_CHECK(length >= 0 && length <= offset_, "kv_cache", "cannot trim to ", length,
           " positions: ", offset_, " are stored");
  offset_ = length;
}

Cache::Cache(int num_layers, int step) {
  FT_CHECK(num_layers > 0, "kv_cache", "num_layers must be positive, got ", num_layers);
  layers_.assign(num_layers, LayerCache(step));
}

LayerCache& Cache::layer(int i) {
  FT_CHECK(i >= 0 && i < num_layers(), "kv_cache", "layer ", i, " out of range (", num_layers(),
           " layers)");
  return layers_[i];
}

void Cache::trim(int length) {
  FT_CHECK(length >= 0 && length <= offset_, "kv_cache", "cannot trim to ", length,
           " positions: ", offset_, " are stored");
  if (length == offset_) return;
  for (const auto& layer : layers_)
    FT_CHECK(!layer.conv_state(), "kv_cache",
             "a convolution layer's state cannot be rewound (trim to ", length, " of ", offset_,
             " positions)");
  for (auto& layer : layers_) layer.trim(std::min(length, layer.offset()));
  offset_ = length;
}

}  // namespace ft::models
