#include "ft/nn/quantized_linear.h"

#include <mlx/ops.h>
#include <mlx/transforms.h>  // defines: custom_vjp

namespace ft::nn {

// Note [Few groups on CUDA]
// MLX 0.32.4's CUDA quantized matmul returns wrong values when a row holds a single
// quantization group (in_features == group_size, e.g. 64 with groups of 64) and there is
// more than one row of x; with 4 groups (256) it is right. tests/nn/quantized_linear_test
// sweeps these shapes. Such narrow layers are tiny, so on a GPU we multiply by the
// dequantized matrix below 4 groups per row instead.
// Note [Quantized products on the CPU]
// MLX 0.32.4's CPU quantized_matmul is a scalar loop: a 512 x 576 x 1536 product ran at 2.3
// GFLOP/s on a 2-core EPYC, 70 times slower than OpenBLAS's float product, while dequantize
// followed by the float product ran at 0.79 of the float speed. QLoRA of SmolLM2-135M on its
// own Q4_1 weights trained at 14 tokens/s. So on the CPU a quantized layer multiplies by its
// dequantized matrix, made in the forward and made again in the backward (its rows are
// what dx needs), so that no layer's floats outlive its own product: the weights stay
// stored quantized. The rebuild depends on the cotangent, which keeps a compiled graph from
// merging it with the forward's and keeping that alive instead.
// Note [Many rows on a GPU]
// MLX's CUDA quantized matmul is built for generation's few rows. A training step's
// products have thousands: Llama-3.1-8B QLoRA at 1 x 2048 on an H100 ran at 4,001 tokens/s
// through it, where transformers over bitsandbytes, which dequantizes each weight and
// multiplies with cuBLAS, ran at 7,174. So from kDequantizedRowsOnGpu rows a GPU takes the
// CPU's path above: the layer's matrix is dequantized for its product and again in the
// backward, and dies with it. Generation's decode steps keep the quantized kernel. Same
// run, H100 (`dev/gpu/ab.sh`, STEPS=4): 3,888 tokens/s and 25.7 GiB through the quantized
// kernel, 10,274 tokens/s and 28.8 GiB dequantized; under `--memory-limit 12`, 7,183
// tokens/s and 16.2 GiB. The extra memory is the dequantized matrices, whose buffers MLX
// releases late (Note [Memory on MLX's CUDA backend] in ft/models/memory.cpp).

namespace {

mx::array dequantized_matmul_t(const mx::array& x, const mx::array& weight, const mx::array& scales,
                               const mx::array& biases, int group_size, int bits) {
  auto product = [group_size, bits](const std::vector<mx::array>& in) {
    mx::array w = mx::dequantize(in[1], in[2], in[3], group_size, bits);
    return std::vector<mx::array>{mx::matmul(in[0], mx::transpose(mx::astype(w, in[0].dtype())))};
  };
  auto backward = [group_size, bits](const std::vector<mx::array>& primals,
                                     const std::vector<mx::array>& cotangents,
                                     const std::vector<mx::array>&) {
    std::vector<mx::array> q = mx::depends({primals[1], primals[2], primals[3]}, {cotangents[0]});
    mx::array w = mx::dequantize(q[0], q[1], q[2], group_size, bits);
    // The quantized arrays are frozen: their cotangents are never read.
    return std::vector<mx::array>{mx::matmul(cotangents[0], mx::astype(w, cotangents[0].dtype())),
                                  mx::zeros_like(primals[1]), mx::zeros_like(primals[2]),
                                  mx::zeros_like(primals[3])};
  };
  return mx::custom_vjp(product, backward)({x, weight, scales, biases})[0];
}

}  // namespace

mx::array quantized_matmul_t(const mx::array& x, const mx::array& weight, const mx::array& scales,
                             const mx::array& biases, int group_size, int bits) {
  if (mx::default_device() == mx::Device::cpu)  // Note [Quantized products on the CPU]
    return dequantized_matmul_t(x, weight, scales, biases, group_size, bits);
  if (x.size() / x.shape(-1) >= kDequantizedRowsOnGpu)  // Note [Many rows on a GPU]
    return dequantized_matmul_t(x, weight, scales, biases, group_size, bits);
  int groups_per_row = scales.shape(-1);
  if (groups_per_row < 4 && mx::default_device() == mx::Device::gpu) {
    mx::array w = mx::dequantize(weight, scales, biases, group_size, bits);
    return mx::matmul(x, mx::transpose(mx::astype(w, x.dtype())));
  }
  return mx::quantized_matmul(x, weight, scales, biases, /*transpose=*/true, group_size, bits);
}

void check_quantization(const char* place, int features, int group_size, int bits) {
  FT_CHECK(bits == 2 || bits == 3 || bits == 4 || bits == 5 || bits == 6 || bits == 8, place,
           "bits must be 2, 3, 4, 5, 6 or 8, got ", bits);
  FT_CHECK(group_size == 32 || group_size == 64 || group_size == 128, place,
           "group_size must be 32, 64 or 128, got ", group_size);
  FT_CHECK(features > 0 && features % group_size == 0, place, "group_size ", group_size,
           " does not divide the quantized dimension ", features);
}

QuantizedLinear::QuantizedLinear(int in_features, int out_features, bool bias, int group_size,
                                 int bits, mx::Dtype dtype)
    : group_size_(group_size),
      bits_(bits),
      weight_(mx::array(0u)),
      scales_(mx::array(0.0f)),
      biases_(mx::array(0.0f)) {
  FT_CHECK(out_features > 0, "quantized_linear", "out_features must be positive, got ",
           out_features);
  check_quantization("quantized_linear", in_features, group_size, bits);
  weight_ = mx::zeros({out_features, in_features * bits / 32}, mx::uint32);
  scales_ = mx::zeros({out_features, in_features / group_size}, dtype);
  biases_ = mx::zeros({out_features, in_features / group_size}, dtype);
  if (bias) bias_ = mx::zeros({out_features}, dtype);
  register_all();
}

QuantizedLinear::QuantizedLinear(mx::array weight, mx::array scales, mx::array biases,
                                 std::optional<mx::array> bias, int group_size, int bits)
    : group_size_(group_size),
      bits_(bits),
      weight_(std::move(weight)),
      scales_(std::move(scales)),
      biases_(std::move(biases)),
      bias_(std::move(bias)) {
  FT_CHECK(weight_.ndim() == 2 && weight_.dtype() == mx::uint32, "quantized_linear",
           "weight must be a 2-D uint32 array");
  // Checked before in_features(), which divides by bits.
  FT_CHECK(bits > 0, "quantized_linear", "bits must be 2, 3, 4, 5, 6 or 8, got ", bits);
  check_quantization("quantized_linear", in_features(), group_size, bits);
  mx::Shape group_shape{out_features(), in_features() / group_size};
  FT_CHECK(scales_.shape() == group_shape && biases_.shape() == group_shape, "quantized_linear",
           "scales and biases must have shape (", group_shape[0], ", ", group_shape[1], ")");
  FT_CHECK(!bias_ || (bias_->ndim() == 1 && bias_->shape(0) == out_features()), "quantized_linear",
           "bias must have shape (", out_features(), ",)");
  register_all();
}

std::shared_ptr<QuantizedLinear> QuantizedLinear::from_linear(const Linear& linear, int group_size,
                                                              int bits) {
  check_quantization("quantized_linear", linear.in_features(), group_size, bits);
  auto packed = mx::quantize(linear.weight_out_in(), group_size, bits);
  return std::make_shared<QuantizedLinear>(packed[0], packed[1], packed[2], linear.bias(),
                                           group_size, bits);
}

void QuantizedLinear::register_all() {
  register_parameter("weight", &weight_);
  register_parameter("scales", &scales_);
  register_parameter("biases", &biases_);
  if (bias_) register_parameter("bias", &*bias_);
  freeze("^(weight|scales|biases)$");
}

mx::array QuantizedLinear::operator()(const mx::array& x) {
  FT_CHECK(x.ndim() >= 1 && x.shape(-1) == in_features(), "quantized_linear",
           "input's last dimension is ", x.ndim() ? x.shape(-1) : 0, ", expected ", in_features());
  auto y = quantized_matmul_t(x, weight_, scales_, biases_, group_size_, bits_);
  return bias_ ? mx::add(y, *bias_) : y;
}

mx::array QuantizedLinear::dequantized_weight() const {
  return mx::dequantize(weight_, scales_, biases_, group_size_, bits_);
}

}  // namespace ft::nn
