// Embedding tables: rows looked up by integer ids, and the same table used as a
// tied output head (as_linear).
#pragma once

#include <memory>

#include "ft/nn/module.h"

namespace ft::nn {

class Embedding : public Layer {
 public:
  // Rows drawn N(0, 1) from key, as PyTorch's nn.Embedding does.
  Embedding(int num_embeddings, int dim, const mx::array& key, mx::Dtype dtype = mx::float32);
  // Wraps a (num_embeddings, dim) table.
  explicit Embedding(mx::array weight);

  std::string type_name() const override { return "Embedding"; }
  // ids: integer array of any shape -> (..., dim).
  mx::array operator()(const mx::array& ids) override;
  // x (..., dim) -> (..., num_embeddings): x W^T, for output heads tied to the table.
  mx::array as_linear(const mx::array& x) const;

  int num_embeddings() const { return weight_.shape(0); }
  int dim() const { return weight_.shape(1); }
  const mx::array& weight() const { return weight_; }

 private:
  mx::array weight_;  // (num_embeddings, dim)
};

// The table in MLX's affine group-wise format along dim; names as in mlx-lm:
// "weight" (num, dim * bits / 32) uint32, "scales" and "biases" (num, dim / group_size),
// all frozen on construction.
class QuantizedEmbedding : public Layer {
 public:
  // Zero-filled arrays of the right shapes, to be filled by load().
  QuantizedEmbedding(int num_embeddings, int dim, int group_size = 64, int bits = 4,
                     mx::Dtype dtype = mx::float32);
  // Wraps arrays as mx::quantize returns them.
  QuantizedEmbedding(mx::array weight, mx::array scales, mx::array biases, int group_size,
                     int bits);
  static std::shared_ptr<QuantizedEmbedding> from_embedding(const Embedding& embedding,
                                                            int group_size = 64, int bits = 4);

  std::string type_name() const override { return "QuantizedEmbedding"; }
  // Gathers the packed rows, then dequantizes only those.
  mx::array operator()(const mx::array& ids) override;
  // x (..., dim) -> (..., num_embeddings) through quantized_matmul.
  mx::array as_linear(const mx::array& x) const;

  int num_embeddings() const { return weight_.shape(0); }
  int dim() const { return weight_.shape(1) * 32 / bits_; }
  int group_size() const { return group_size_; }
  int bits() const { return bits_; }
  const mx::array& weight() const { return weight_; }
  const mx::array& scales() const { return scales_; }
  const mx::array& biases() const { return biases_; }
  mx::array dequantized_weight() const;  // (num_embeddings, dim)

 private:
  void register_all();
  int group_size_;
  int bits_;
  mx::array weight_;  // (num_embeddings, dim * bits / 32) uint32
  mx::array scales_;  // (num_embeddings, dim / group_size)
  mx::array biases_;  // (num_embeddings, dim / group_size)
};

}  // namespace ft::nn
