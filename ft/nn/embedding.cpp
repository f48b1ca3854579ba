#include "ft/nn/embedding.h"

#include <mlx/ops.h>

#include "ft/nn/init.h"
#include "ft/nn/quantized_linear.h"

namespace ft::nn {
namespace {

void check_ids(const char* place, const mx::array& ids) {
  FT_CHECK(mx::issubdtype(ids.dtype(), mx::integer), place,
           "ids must be an integer array, got dtype ", ids.dtype());
}

void check_input(const char* place, const mx::array& x, int dim) {
  FT_CHECK(x.ndim() >= 1 && x.shape(-1) == dim, place, "input's last dimension is ",
           x.ndim() ? x.shape(-1) : 0, ", expected ", dim);
}

}  // namespace

Embedding::Embedding(int num_embeddings, int dim, const mx::array& key, mx::Dtype dtype)
    : weight_(mx::array(0.0f)) {
  FT_CHECK(num_embeddings > 0 && dim > 0, "embedding", "sizes must be positive, got (",
           num_embeddings, ", ", dim, ")");
  weight_ = init::normal({num_embeddings, dim}, 1.0f, key, dtype);
  register_parameter("weight", &weight_);
}

Embedding::Embedding(mx::array weight) : weight_(std::move(weight)) {
  FT_CHECK(weight_.ndim() == 2, "embedding", "weight must be 2-D, got ", weight_.ndim(), "-D");
  register_parameter("weight", &weight_);
}

mx::array Embedding::operator()(const mx::array& ids) {
  check_ids("embedding", ids);
  return mx::take(weight_, ids, 0);
}

mx::array Embedding::as_linear(const mx::array& x) const {
  check_input("embedding", x, dim());
  return mx::matmul(x, mx::transpose(weight_));
}

QuantizedEmbedding::QuantizedEmbedding(int num_embeddings, int dim, int group_size, int bits,
                                       mx::Dtype dtype)
    : group_size_(group_size),
      bits_(bits),
      weight_(mx::array(0u)),
      scales_(mx::array(0.0f)),
      biases_(mx::array(0.0f)) {
  FT_CHECK(num_embeddings > 0, "quantized_embedding", "num_embeddings must be positive, got ",
           num_embeddings);
  check_quantization("quantized_embedding", dim, group_size, bits);
  weight_ = mx::zeros({num_embeddings, dim * bits / 32}, mx::uint32);
  scales_ = mx::zeros({num_embeddings, dim / group_size}, dtype);
  biases_ = mx::zeros({num_embeddings, dim / group_size}, dtype);
  register_all();
}

QuantizedEmbedding::QuantizedEmbedding(mx::array weight, mx::array scales, mx::array biases,
                                       int group_size, int bits)
    : group_size_(group_size),
      bits_(bits),
      weight_(std::move(weight)),
      scales_(std::move(scales)),
      biases_(std::move(biases)) {
  FT_CHECK(weight_.ndim() == 2 && weight_.dtype() == mx::uint32, "quantized_embedding",
           "weight must be a 2-D uint32 array");
  FT_CHECK(bits > 0, "quantized_embedding", "bits must be 2, 3, 4, 5, 6 or 8, got ", bits);
  check_quantization("quantized_embedding", dim(), group_size, bits);
  mx::Shape group_shape{num_embeddings(), dim() / group_size};
  FT_CHECK(scales_.shape() == group_shape && biases_.shape() == group_shape, "quantized_embedding",
           "scales and biases must have shape (", group_shape[0], ", ", group_shape[1], ")");
  register_all();
}

std::shared_ptr<QuantizedEmbedding> QuantizedEmbedding::from_embedding(const Embedding& embedding,
                                                                       int group_size, int bits) {
  check_quantization("quantized_embedding", embedding.dim(), group_size, bits);
  auto packed = mx::quantize(embedding.weight(), group_size, bits);
  return std::make_shared<QuantizedEmbedding>(packed[0], packed[1], packed[2], group_size, bits);
}

void QuantizedEmbedding::register_all() {
  register_parameter("weight", &weight_);
  register_parameter("scales", &scales_);
  register_parameter("biases", &biases_);
  freeze();
}

mx::array QuantizedEmbedding::operator()(const mx::array& ids) {
  check_ids("quantized_embedding", ids);
  auto rows = mx::take(weight_, ids, 0);
  auto scales = mx::take(scales_, ids, 0);
  auto biases = mx::take(biases_, ids, 0);
  return mx::dequantize(rows, scales, biases, group_size_, bits_);
}

mx::array QuantizedEmbedding::as_linear(const mx::array& x) const {
  check_input("quantized_embedding", x, dim());
  return quantized_matmul_t(x, weight_, scales_, biases_, group_size_, bits_);
}

mx::array QuantizedEmbedding::dequantized_weight() const {
  return mx::dequantize(weight_, scales_, biases_, group_size_, bits_);
}

}  // namespace ft::nn
