#include "ft/models/rope.h"

#include <cmath>
#include <vector>

#include <mlx/fast.h>
#include <mlx/ops.h>

namespace ft::models {

namespace {

using Type = RopeScaling::Type;

mx::array vector_of(const std::vector<float>& values) {
  return mx::array(values.data(), {static_cast<int>(values.size())}, mx::float32);
}

// Llama 3's rotary periods (1 / inverse frequency) for each pair of dimensions: long
// wavelengths are stretched by factor, short ones kept, the band between interpolated.
std::vector<float> llama3_periods(int dims, float theta, const RopeScaling& scaling) {
  const double pi = 3.14159265358979323846;
  double context = scaling.original_max_position_embeddings;
  double low_wavelength = context / scaling.low_freq_factor;
  double high_wavelength = context / scaling.high_freq_factor;
  std::vector<float> periods;
  for (int i = 0; i < dims; i += 2) {
    double inv_freq = 1.0 / std::pow(static_cast<double>(theta), static_cast<double>(i) / dims);
    double wavelength = 2 * pi / inv_freq;
    double scaled = inv_freq;
    if (wavelength > low_wavelength) {
      scaled = inv_freq / scaling.factor;
    } else if (wavelength >= high_wavelength) {
      double smooth = (context / wavelength - scaling.low_freq_factor) /
                      (scaling.high_freq_factor - scaling.low_freq_factor);
      scaled = (1 - smooth) * inv_freq / scaling.factor + smooth * inv_freq;
    }
    periods.push_back(static_cast<float>(1.0 / scaled));
  }
  return periods;
}

// longrope: each pair's plain period multiplied by its factor.
std::vector<float> longrope_periods(int dims, float theta, const std::vector<float>& factors) {
  std::vector<float> periods;
  for (int i = 0; i < dims; i += 2)
    periods.push_back(static_cast<float>(
        factors[i / 2] * std::pow(static_cast<double>(theta), static_cast<double>(i) / dims)));
  return periods;
}

}  // namespace

Rope::Rope(const Config& config, float base, bool scaled)
    : head_dim_(config.resolved_head_dim()),
      dims_(config.rotary_dims()),
      base_(base),
      scaling_(scaled ? config.rope_scaling : RopeScaling{}),
      max_position_embeddings_(config.max_position_embeddings) {
  if (scaling_.type == Type::llama3) periods_ = vector_of(llama3_periods(dims_, base_, scaling_));
  if (scaling_.type == Type::longrope) {
    periods_ = vector_of(longrope_periods(dims_, base_, scaling_.short_factor));
    long_periods_ = vector_of(longrope_periods(dims_, base_, scaling_.long_factor));
    attention_factor_ = longrope_attention_factor(config);
  }
}

float longrope_attention_factor(const Config& config) {
  const RopeScaling& r = config.rope_scaling;
  if (r.attention_factor > 0) return r.attention_factor;
  const double original = r.original_max_position_embeddings;
  const double factor = r.factor > 0 ? r.factor : double(config.max_position_embeddings) / original;
  return factor <= 1 ? 1.0f
                     : static_cast<float>(std::sqrt(1 + std::log(factor) / std::log(original)));
}

mx::array Rope::operator()(const mx::array& x, int offset) const {
  int length = offset + x.shape(2);  // positions seen, this chunk included
  if (scaling_.type == Type::longrope) {
    bool long_context = length > scaling_.original_max_position_embeddings;
    mx::array in = x;
    if (attention_factor_ != 1.0f) {
      // fast::rope is linear in x: scaling the rotated part first scales its cos and sin.
      std::vector<float> scale(head_dim_, 1.0f);
      for (int i = 0; i < dims_; ++i) scale[i] = attention_factor_;
      in = x * mx::astype(vector_of(scale), x.dtype());
    }
    return mx::fast::rope(in, dims_, false, std::nullopt, 1.0f, offset,
                          long_context ? long_periods_ : periods_);
  }
  if (periods_) return mx::fast::rope(x, dims_, false, std::nullopt, 1.0f, offset, periods_);
  float base = base_;
  float position_scale = 1.0f;
  if (scaling_.type == Type::linear) position_scale = 1.0f / scaling_.factor;
  if (scaling_.type == Type::dynamic && length > max_position_embeddings_) {
    // NTK-aware scaling as Hugging Face computes it from the largest position of the
    // forward pass: the base grows with the length past max_position_embeddings, and
    // shorter sequences use plain RoPE.
    double factor = scaling_.factor;
    double ratio = factor * length / max_position_embeddings_ - (factor - 1);
    base = static_cast<float>(base_ * std::pow(ratio, static_cast<double>(dims_) / (dims_ - 2)));
  }
  return mx::fast::rope(x, dims_, false, base, position_scale, offset);
}

}  // namespace ft::models
