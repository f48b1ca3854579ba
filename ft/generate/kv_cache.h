// The key/value cache of incremental decoding: each attention layer keeps the rotated
// keys and the values of every position seen so far, so a new token costs one
// position of work instead of a forward over the whole sequence.
//
// Storage grows in steps of `step` positions (a few large copies instead of one per
// token); the arrays handed back are views of the filled part.
#pragma once

#include <optional>
#include <utility>
#include <vector>

#include <mlx/array.h>

namespace ft::generate {

namespace mx = mlx::core;

// One layer's keys and values.
class LayerCache {
 public:
  explicit LayerCache(int step = 256);

  // Positions stored so far: the position of the next token.
  int offset() const { return offset_; }
  // Stores keys and values (batch, n_kv_heads, length, head_dim) at positions
  // offset() .. offset() + length - 1 and returns everything stored, each
  // (batch, n_kv_heads, offset() + length, head_dim) (offset() read before the call).
  std::pair<mx::array, mx::array> update(const mx::array& keys, const mx::array& values);
  // Drops the positions past `length` (e.g. to reuse a shared prompt).
  void trim(int length);

 private:
  int step_;
  int offset_ = 0;
  std::optional<mx::array> keys_;    // (batch, n_kv_heads, capacity, head_dim)
  std::optional<mx::array> values_;  // (batch, n_kv_heads, capacity, head_dim)
};

// The caches of every layer of a model.
class KVCache {
 public:
  explicit KVCache(int num_layers, int step = 256);

  int num_layers() const { return static_cast<int>(layers_.size()); }
  LayerCache& layer(int i);
  // Positions stored by the first layer: before a forward, the position of its first
  // token (all layers agree between forwards).
  int offset() const { return layers_.front().offset(); }
  void trim(int length);

 private:
  std::vector<LayerCache> layers_;
};

}  // namespace ft::generate
