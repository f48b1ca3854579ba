// QuantizedLinear: y = x dequantize(W)^T + b with W stored in MLX's affine group-wise
// format, as mlx-lm's QuantizedLinear stores it.
//
// Parameters: "weight" (out, in * bits / 32) uint32 packed, "scales" and "biases"
// (out, in / group_size) in the compute dtype, and the optional "bias" (out,). The
// three quantization arrays are frozen on construction; "bias" stays trainable as a
// Linear's would.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>

#include "ft/nn/linear.h"

namespace ft::nn {

// Throws ft::Error("place", ...) unless bits is one MLX's affine mode packs
// (2, 3, 4, 5, 6, 8), group_size is 32, 64 or 128, and group_size divides features.
void check_quantization(const char* place, int features, int group_size, int bits);

// x (..., in) times the transpose of a quantized (out, in) matrix. Every quantized layer
// multiplies through this one function (Note [Few groups on CUDA] in quantized_linear.cpp).
mx::array quantized_matmul_t(const mx::array& x, const mx::array& weight, const mx::array& scales,
                             const mx::array& biases, int group_size, int bits);

// From this many rows of x a GPU multiplies by the dequantized matrix (Note [Many rows on a
// GPU] in quantized_linear.cpp); fewer, as in generation, go through the quantized kernel.
constexpr int64_t kDequantizedRowsOnGpu = 256;

class QuantizedLinear : public Layer {
 public:
  // Zero-filled arrays of the right shapes, to be filled by load(): how a quantized
  // checkpoint is read.
  QuantizedLinear(int in_features, int out_features, bool bias, int group_size = 64, int bits = 4,
                  mx::Dtype dtype = mx::float32);
  // Wraps arrays as mx::quantize returns them; checks their shapes and dtypes.
  QuantizedLinear(mx::array weight, mx::array scales, mx::array biases,
                  std::optional<mx::array> bias, int group_size, int bits);
  // Quantizes a Linear's weight; scales, biases and output take its dtype.
  static std::shared_ptr<QuantizedLinear> from_linear(const Linear& linear, int group_size = 64,
                                                      int bits = 4);

  std::string type_name() const override { return "QuantizedLinear"; }
  mx::array operator()(const mx::array& x) override;

  int in_features() const { return weight_.shape(1) * 32 / bits_; }
  int out_features() const { return weight_.shape(0); }
  int group_size() const { return group_size_; }
  int bits() const { return bits_; }
  const mx::array& weight() const { return weight_; }
  const mx::array& scales() const { return scales_; }
  const mx::array& biases() const { return biases_; }
  const std::optional<mx::array>& bias() const { return bias_; }
  // W as floats, (out, in), in the scales' dtype.
  mx::array dequantized_weight() const;

 private:
  void register_all();
  int group_size_;
  int bits_;
  mx::array weight_;               // (out, in * bits / 32) uint32
  mx::array scales_;               // (out, in / group_size)
  mx::array biases_;               // (out, in / group_size)
  std::optional<mx::array> bias_;  // (out,)
};

}  // namespace ft::nn
