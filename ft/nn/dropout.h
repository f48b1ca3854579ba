// Dropout with explicit keys.
//
// Each Dropout holds a key and splits a fresh one off it on every forward pass in
// train mode, so a seed fixes the sequence of masks. The split stays lazy (unlike
// ft::Rng::next, which evaluates) so a forward pass can run inside mx::compile. A
// compiled step must not draw from a key captured at trace time, or every replay would
// reuse one mask: it takes a key as an input and calls reseed_dropout(model, key)
// before running the model.
#pragma once

#include <cstdint>

#include "ft/nn/module.h"

namespace ft::nn {

class Dropout : public Layer {
 public:
  // p in [0, 1); p = 0 is the identity. Throws ft::Error otherwise.
  explicit Dropout(float p, uint64_t seed = 0);
  Dropout(float p, const mx::array& key);

  std::string type_name() const override { return "Dropout"; }
  // In train mode with p > 0: zeroes each element with probability p and scales the
  // rest by 1 / (1 - p), drawing the mask from the next key; otherwise returns x.
  mx::array operator()(const mx::array& x) override;
  // The same with a given key, leaving the held key untouched.
  mx::array operator()(const mx::array& x, const mx::array& key) const;

  float p() const { return p_; }
  // True when a forward pass would drop anything.
  bool active() const { return training() && p_ > 0.0f; }
  // The held key, for checkpoints; reseed() with it resumes the sequence.
  const mx::array& key() const { return key_; }
  // Replaces the held key; it must be a (2,) uint32 key as mx::random::key makes.
  void reseed(const mx::array& key);

 private:
  float p_;
  mx::array key_;  // (2,) uint32
};

// Gives every Dropout in root's tree (named_modules order) its own key split from key.
void reseed_dropout(Module& root, const mx::array& key);

}  // namespace ft::nn
