// What a model keeps between forwards of incremental decoding: each attention layer's
// rotated keys and values for every position seen so far, and each short-convolution
// layer's last inputs (LFM2), so a new token costs one position of work instead of a
// forward over the whole sequence.
//
// Key/value storage grows in steps of `step` positions (a few large copies instead of
// one per token); the arrays handed back are views of the filled part.
#pragma once

#include <optional>
#include <utility>
#include <vector>

#include <mlx/array.h>

namespace ft::models {

namespace mx = mlx::core;

// One layer's state: keys and values for attention layers, the convolution's window for
// convolution layers.
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

  // A short convolution's last kernel - 1 inputs (batch, kernel - 1, channels), nullopt
  // before the first forward.
  const std::optional<mx::array>& conv_state() const { return conv_state_; }
  void set_conv_state(mx::array state) { conv_state_ = std::move(state); }

 private:
  int step_;
  int offset_ = 0;
  std::optional<mx::array> keys_;    // (batch, n_kv_heads, capacity, head_dim)
  std::optional<mx::array> values_;  // (batch, n_kv_heads, capacity, head_dim)
  std::optional<mx::array> conv_state_;
};

// The caches of every layer of a model, and the position the next forward starts at.
class Cache {
 public:
  explicit Cache(int num_layers, int step = 256);

  int num_layers() const { return static_cast<int>(layers_.size()); }
  LayerCache& layer(int i);
  // Positions seen: the position of the next forward's first token.
  int offset() const { return offset_; }
  // Called by the model after a forward of `length` positions.
  void advance(int length) { offset_ += length; }
  // Forgets the positions past `length`. A convolution's state cannot be rewound, so
  // trimming a cache that holds one is an ft::Error unless length is offset().
  void trim(int length);

 private:
  std::vector<LayerCache> layers_;
  int offset_ = 0;
};

}  // namespace ft::models
