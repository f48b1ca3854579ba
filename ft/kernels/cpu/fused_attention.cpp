#include "ft/kernels/cpu/fused_attention.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <vector>

#include <mlx/backend/cpu/encoder.h>  // defines: mx::cpu::get_command_encoder
#include <mlx/ops.h>
#include <mlx/primitives.h>

#include "ft/core/error.h"
#include "ft/kernels/cpu/avx2.h"
#include "ft/kernels/cpu/pacing.h"
#include "ft/kernels/cpu/parallel.h"

namespace ft::kernels::cpu {

// Note [Attention in blocks]
// softmax(scale q kᵀ + mask) v on the CPU the way flash attention does it on a GPU: for a
// block of query rows and each block of keys,
//   S = scale Q_i K_jᵀ;  m' = max(m, rowmax S);  P = exp(S - m');
//   l = exp(m - m') l + rowsum P;  O = exp(m - m') O + P V_j;  m = m',
// and at the end O / l and the row's logsumexp m + log l, which the backward keeps instead of
// the probabilities. The backward recomputes P = exp(S - lse) block by block:
//   dV_j += Pᵀ dO_i;  dP = dO_i V_jᵀ;  dS = scale P (dP - rowsum(dO ∘ O));
//   dQ_i += dS K_j;  dK_j += dSᵀ Q_i.
// Under a causal mask the key blocks past a query block's last row are never visited, so the
// masked half of the scores costs nothing, and no (L, K) score or probability array is ever
// written: the composite path (matmul, softmax, matmul, and their transposes in the
// backward) wrote and read several per layer, and its per-head products of (L, D) by (D, K)
// ran at a third of the processor's peak. Every product here is one 6 x 16 register tile
// (`tile`) with both operands read through strides: a row-major operand, or a transposed
// one (Pᵀ, dSᵀ) read column by column, so nothing is transposed but kᵀ and vᵀ, packed once
// per key head and shared by its query heads. A task is one (batch, key head) pair and its
// query heads; it owns the rows of dK and dV it accumulates, in a fixed order, so the
// results do not depend on the thread count.

namespace {

constexpr const char* kPlace = "fused_attention";

constexpr int64_t kTile = 6;         // rows per register tile (16 columns)
constexpr int64_t kQueryBlock = 48;  // query rows per block, a multiple of kTile
constexpr int64_t kKeyBlock = 64;    // keys per block, a multiple of 16

// A (B, H, rows, D) float32 array: its data and the strides of the first three axes; the
// last axis has stride 1.
struct View {
  const float* data;
  int64_t batch, head, row;
  const float* at(int64_t b, int64_t h) const { return data + b * batch + h * head; }
};

struct Dims {
  int64_t batch, heads, kv_heads, length, keys, dim;
  bool causal;
  int64_t offset;  // causal: query i sees keys <= offset + i
  float scale;
  int64_t groups() const { return heads / kv_heads; }
  int64_t padded_keys() const { return (keys + 15) / 16 * 16; }
  // Keys [0, result) that some row of the query block at i0 with `rows` rows sees.
  int64_t key_end(int64_t i0, int64_t rows) const {
    return causal ? std::min(keys, offset + i0 + rows) : keys;
  }
  // Keys of the block at j0 (nk keys) that query row i sees: [j0, j0 + result).
  int64_t visible(int64_t i, int64_t j0, int64_t nk) const {
    return causal ? std::clamp<int64_t>(offset + i + 1 - j0, 0, nk) : nk;
  }
};

#if FT_AVX2_KERNELS

// c[i][0..16) (+)= sum_t a[i * a_row + t * a_t] * b[t * b_t + 0..16) for rows i < R.
template <int R>
FT_AVX2 inline void tile(const float* a, int64_t a_row, int64_t a_t, const float* b, int64_t b_t,
                         int64_t count, float* c, int64_t c_row, bool accumulate) {
  __m256 acc[R][2];
#pragma GCC unroll 6
  for (int i = 0; i < R; ++i) {
    acc[i][0] = accumulate ? _mm256_loadu_ps(c + i * c_row) : _mm256_setzero_ps();
    acc[i][1] = accumulate ? _mm256_loadu_ps(c + i * c_row + 8) : _mm256_setzero_ps();
  }
#pragma GCC unroll 4  // as head_cross_entropy.cpp's tiles
  for (int64_t t = 0; t < count; ++t) {
    const __m256 b0 = _mm256_loadu_ps(b + t * b_t);
    const __m256 b1 = _mm256_loadu_ps(b + t * b_t + 8);
#pragma GCC unroll 6
    for (int i = 0; i < R; ++i) {
      const __m256 x = _mm256_broadcast_ss(a + i * a_row + t * a_t);
      acc[i][0] = _mm256_fmadd_ps(x, b0, acc[i][0]);
      acc[i][1] = _mm256_fmadd_ps(x, b1, acc[i][1]);
    }
  }
#pragma GCC unroll 6
  for (int i = 0; i < R; ++i) {
    _mm256_storeu_ps(c + i * c_row, acc[i][0]);
    _mm256_storeu_ps(c + i * c_row + 8, acc[i][1]);
  }
}

// tile<R> for R = 1 .. kTile, indexed by R - 1.
using Tile = void (*)(const float*, int64_t, int64_t, const float*, int64_t, int64_t, float*,
                      int64_t, bool);
constexpr Tile kTiles[kTile] = {tile<1>, tile<2>, tile<3>, tile<4>, tile<5>, tile<6>};

// C (+)= A B for C (rows, cols) with row stride c_row, cols a multiple of 16; A's (i, t) at
// a[i * a_row + t * a_t] and B's row t at b + t * b_t, over t < count.
FT_AVX2 void product(int64_t rows, int64_t cols, int64_t count, const float* a, int64_t a_row,
                     int64_t a_t, const float* b, int64_t b_t, float* c, int64_t c_row,
                     bool accumulate) {
  for (int64_t j = 0; j < cols; j += 16)
    for (int64_t i = 0; i < rows; i += kTile) {
      const float* ai = a + i * a_row;
      float* ci = c + i * c_row + j;
      kTiles[std::min(kTile, rows - i) - 1](ai, a_row, a_t, b + j, b_t, count, ci, c_row,
                                            accumulate);
    }
}

// dst (D, padded keys) = the key head's rows transposed, zero past the last key.
void transpose_keys(const Dims& d, const float* src, int64_t row_stride, float* dst) {
  const int64_t padded = d.padded_keys();
  for (int64_t c = 0; c < d.dim; ++c) {
    float* out = dst + c * padded;
    for (int64_t j = 0; j < d.keys; ++j) out[j] = src[j * row_stride + c];
    std::fill(out + d.keys, out + padded, 0.0f);
  }
}

FT_AVX2 inline float horizontal_max(__m256 v) {
  __m128 x = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  x = _mm_max_ps(x, _mm_movehl_ps(x, x));
  x = _mm_max_ss(x, _mm_movehdup_ps(x));
  return _mm_cvtss_f32(x);
}

FT_AVX2 inline float horizontal_sum(__m256 v) {
  __m128 x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  x = _mm_add_ps(x, _mm_movehl_ps(x, x));
  x = _mm_add_ss(x, _mm_movehdup_ps(x));
  return _mm_cvtss_f32(x);
}

// Lanes j0 + lane < limit of 8 columns starting at j0.
FT_AVX2 inline __m256 lanes_below(int64_t j0, int64_t limit) {
  const __m256i index = _mm256_add_epi32(_mm256_set1_epi32(static_cast<int>(j0)),
                                         _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  return _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(limit)), index));
}

struct ForwardJob {
  Dims d;
  View q, k, v;
  float* out;  // (B, Hq, L, D)
  float* lse;  // (B, Hq, L)
};

// One (batch, key head) task of the forward. kt: (D, padded keys); s: (kQueryBlock,
// kKeyBlock); o: (kQueryBlock, D); stats: 2 * kQueryBlock.
FT_AVX2 void forward_task(const ForwardJob& job, int64_t b, int64_t g, float* kt, float* s,
                          float* o, float* stats) {
  const Dims& d = job.d;
  const int64_t dim = d.dim, padded = d.padded_keys();
  const float* keys = job.k.at(b, g);
  const float* values = job.v.at(b, g);
  transpose_keys(d, keys, job.k.row, kt);
  float* max = stats;
  float* sum = stats + kQueryBlock;
  const __m256 scale = _mm256_set1_ps(d.scale);
  const __m256 minus_inf = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
  for (int64_t h = g * d.groups(); h < (g + 1) * d.groups(); ++h) {
    const float* queries = job.q.at(b, h);
    float* out = job.out + (b * d.heads + h) * d.length * dim;
    float* lse = job.lse + (b * d.heads + h) * d.length;
    for (int64_t i0 = 0; i0 < d.length; i0 += kQueryBlock) {
      const int64_t rows = std::min(kQueryBlock, d.length - i0);
      const int64_t end = d.key_end(i0, rows);
      std::fill(max, max + rows, -std::numeric_limits<float>::infinity());
      std::fill(sum, sum + rows, 0.0f);
      std::fill(o, o + rows * dim, 0.0f);
      for (int64_t j0 = 0; j0 < end; j0 += kKeyBlock) {
        const int64_t nk = std::min(kKeyBlock, end - j0), cols = (nk + 15) / 16 * 16;
        product(rows, cols, dim, queries + i0 * job.q.row, job.q.row, 1, kt + j0, padded, s,
                kKeyBlock, false);
        for (int64_t r = 0; r < rows; ++r) {
          float* sr = s + r * kKeyBlock;
          const int64_t limit = d.visible(i0 + r, j0, nk);
          if (limit == 0) {
            std::fill(sr, sr + cols, 0.0f);
            continue;
          }
          __m256 row_max = minus_inf;
          for (int64_t j = 0; j < cols; j += 8) {
            __m256 x = _mm256_mul_ps(_mm256_loadu_ps(sr + j), scale);
            x = _mm256_blendv_ps(minus_inf, x, lanes_below(j, limit));
            _mm256_storeu_ps(sr + j, x);
            row_max = _mm256_max_ps(row_max, x);
          }
          const float new_max = std::max(max[r], horizontal_max(row_max));
          const float rescale = std::exp(max[r] - new_max);
          const __m256 m = _mm256_set1_ps(new_max);
          __m256 row_sum = _mm256_setzero_ps();
          for (int64_t j = 0; j < cols; j += 8) {
            const __m256 p = exp8_normal(_mm256_sub_ps(_mm256_loadu_ps(sr + j), m));
            _mm256_storeu_ps(sr + j, p);
            row_sum = _mm256_add_ps(row_sum, p);
          }
          sum[r] = rescale * sum[r] + horizontal_sum(row_sum);
          max[r] = new_max;
          if (rescale != 1.0f) {
            const __m256 c = _mm256_set1_ps(rescale);
            for (int64_t k = 0; k < dim; k += 8)
              _mm256_storeu_ps(o + r * dim + k, _mm256_mul_ps(_mm256_loadu_ps(o + r * dim + k), c));
          }
        }
        product(rows, dim, nk, s, kKeyBlock, 1, values + j0 * job.v.row, job.v.row, o, dim, true);
      }
      for (int64_t r = 0; r < rows; ++r) {
        const __m256 inverse = _mm256_set1_ps(1.0f / sum[r]);
        for (int64_t k = 0; k < dim; k += 8)
          _mm256_storeu_ps(out + (i0 + r) * dim + k,
                           _mm256_mul_ps(_mm256_loadu_ps(o + r * dim + k), inverse));
        lse[i0 + r] = max[r] + std::log(sum[r]);
      }
    }
  }
}

struct BackwardJob {
  Dims d;
  View q, k, v, dout;
  const float* out;  // (B, Hq, L, D)
  const float* lse;  // (B, Hq, L)
  float *dq, *dk, *dv;
};

// One (batch, key head) task of the backward. kt, vt: (D, padded keys); s, dp: (kQueryBlock,
// kKeyBlock); delta: L.
FT_AVX2 void backward_task(const BackwardJob& job, int64_t b, int64_t g, float* kt, float* vt,
                           float* s, float* dp, float* delta) {
  const Dims& d = job.d;
  const int64_t dim = d.dim, padded = d.padded_keys();
  const float* keys = job.k.at(b, g);
  const float* values = job.v.at(b, g);
  transpose_keys(d, keys, job.k.row, kt);
  transpose_keys(d, values, job.v.row, vt);
  float* dk = job.dk + (b * d.kv_heads + g) * d.keys * dim;
  float* dv = job.dv + (b * d.kv_heads + g) * d.keys * dim;
  std::fill(dk, dk + d.keys * dim, 0.0f);
  std::fill(dv, dv + d.keys * dim, 0.0f);
  const __m256 scale = _mm256_set1_ps(d.scale);
  for (int64_t h = g * d.groups(); h < (g + 1) * d.groups(); ++h) {
    const float* queries = job.q.at(b, h);
    const float* dout = job.dout.at(b, h);
    const float* out = job.out + (b * d.heads + h) * d.length * dim;
    const float* lse = job.lse + (b * d.heads + h) * d.length;
    float* dq = job.dq + (b * d.heads + h) * d.length * dim;
    std::fill(dq, dq + d.length * dim, 0.0f);
    for (int64_t i = 0; i < d.length; ++i) {
      __m256 acc = _mm256_setzero_ps();
      for (int64_t k = 0; k < dim; k += 8)
        acc = _mm256_fmadd_ps(_mm256_loadu_ps(dout + i * job.dout.row + k),
                              _mm256_loadu_ps(out + i * dim + k), acc);
      delta[i] = horizontal_sum(acc);
    }
    for (int64_t i0 = 0; i0 < d.length; i0 += kQueryBlock) {
      const int64_t rows = std::min(kQueryBlock, d.length - i0);
      const int64_t end = d.key_end(i0, rows);
      const float* qi = queries + i0 * job.q.row;
      const float* doi = dout + i0 * job.dout.row;
      for (int64_t j0 = 0; j0 < end; j0 += kKeyBlock) {
        const int64_t nk = std::min(kKeyBlock, end - j0), cols = (nk + 15) / 16 * 16;
        product(rows, cols, dim, qi, job.q.row, 1, kt + j0, padded, s, kKeyBlock, false);
        product(rows, cols, dim, doi, job.dout.row, 1, vt + j0, padded, dp, kKeyBlock, false);
        for (int64_t r = 0; r < rows; ++r) {
          float* sr = s + r * kKeyBlock;
          float* dpr = dp + r * kKeyBlock;
          const int64_t limit = d.visible(i0 + r, j0, nk);
          const __m256 row_lse = _mm256_set1_ps(lse[i0 + r]);
          const __m256 row_delta = _mm256_set1_ps(delta[i0 + r]);
          for (int64_t j = 0; j < cols; j += 8) {
            const __m256 x = _mm256_fmsub_ps(_mm256_loadu_ps(sr + j), scale, row_lse);
            const __m256 p = _mm256_and_ps(exp8_normal(x), lanes_below(j, limit));
            // P stays in s for dV; dS = scale P (dP - delta) goes to dp.
            _mm256_storeu_ps(sr + j, p);
            _mm256_storeu_ps(dpr + j,
                             _mm256_mul_ps(_mm256_mul_ps(p, scale),
                                           _mm256_sub_ps(_mm256_loadu_ps(dpr + j), row_delta)));
          }
        }
        product(nk, dim, rows, s, 1, kKeyBlock, doi, job.dout.row, dv + j0 * dim, dim, true);
        product(rows, dim, nk, dp, kKeyBlock, 1, keys + j0 * job.k.row, job.k.row, dq + i0 * dim,
                dim, true);
        product(nk, dim, rows, dp, 1, kKeyBlock, qi, job.q.row, dk + j0 * dim, dim, true);
      }
    }
  }
}

#endif  // FT_AVX2_KERNELS

// An input as a task reads it: known once its producer has been scheduled, read once it ran.
struct Operand {
  const float* data;
  int64_t shape[4];
  int64_t strides[4];
};

Operand operand(const mx::array& a) {
  Operand o{a.data<float>(), {}, {}};
  for (int i = 0; i < 4; ++i) {
    o.shape[i] = a.shape(i);
    o.strides[i] = a.strides()[i];
  }
  return o;
}

// The operand's view; one whose last axis is strided is first copied, row-contiguous, into
// `copy`.
View view_of(const Operand& a, std::vector<float>& copy) {
  const int64_t* sh = a.shape;
  const int64_t* st = a.strides;
  if (st[3] == 1 || sh[3] == 1) return {a.data, st[0], st[1], st[2]};
  copy.resize(sh[0] * sh[1] * sh[2] * sh[3]);
  size_t n = 0;
  for (int64_t i = 0; i < sh[0]; ++i)
    for (int64_t j = 0; j < sh[1]; ++j)
      for (int64_t k = 0; k < sh[2]; ++k)
        for (int64_t l = 0; l < sh[3]; ++l)
          copy[n++] = a.data[i * st[0] + j * st[1] + k * st[2] + l * st[3]];
  return {copy.data(), sh[1] * sh[2] * sh[3], sh[2] * sh[3], sh[3]};
}

Dims dims_of(const mx::array& q, const mx::array& k, bool causal, float scale) {
  const int64_t length = q.shape(2), keys = k.shape(2);
  return {q.shape(0), q.shape(1), k.shape(1), length,
          keys,       q.shape(3), causal,     std::max<int64_t>(0, keys - length),
          scale};
}

class AttentionPrimitive : public mx::Primitive {
 public:
  AttentionPrimitive(mx::Stream stream, float scale, bool causal)
      : mx::Primitive(stream), scale_(scale), causal_(causal) {}

  void eval_gpu(const std::vector<mx::array>&, std::vector<mx::array>&) override {
    throw Error(kPlace, "runs on the CPU only");
  }

  bool is_equivalent(const mx::Primitive& other) const override {
    const auto& o = static_cast<const AttentionPrimitive&>(other);
    return scale_ == o.scale_ && causal_ == o.causal_;
  }

 protected:
  // Allocates the outputs and registers the arrays with the stream's encoder, which the
  // caller then dispatches its task to.
  mx::cpu::CommandEncoder& prepare(const std::vector<mx::array>& inputs,
                                   std::vector<mx::array>& outputs) {
    for (auto& out : outputs) out.set_data(mx::allocator::malloc(out.nbytes()));
    auto& encoder = mx::cpu::get_command_encoder(stream());
    for (const auto& a : inputs) encoder.set_input_array(a);
    for (auto& out : outputs) encoder.set_output_array(out);
    return encoder;
  }

  float scale_;
  bool causal_;
};

// Inputs q, k, v; outputs the attention (B, Hq, L, D) and each row's logsumexp (B, Hq, L).
class FusedAttention : public AttentionPrimitive {
 public:
  using AttentionPrimitive::AttentionPrimitive;

  void eval_cpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) override {
#if FT_AVX2_KERNELS
    auto& encoder = prepare(inputs, outputs);
    const Dims d = dims_of(inputs[0], inputs[1], causal_, scale_);
    encoder.dispatch([d, q = operand(inputs[0]), k = operand(inputs[1]), v = operand(inputs[2]),
                      out = outputs[0].data<float>(), lse = outputs[1].data<float>()] {
      std::vector<float> copies[3];
      const ForwardJob job{
          d, view_of(q, copies[0]), view_of(k, copies[1]), view_of(v, copies[2]), out, lse};
      parallel_for(d.batch * d.kv_heads, 1, [&](int64_t begin, int64_t end) {
        Floats kt(d.dim * d.padded_keys()), s(kQueryBlock * kKeyBlock), o(kQueryBlock * d.dim),
            stats(2 * kQueryBlock);
        for (int64_t t = begin; t < end; ++t)
          forward_task(job, t / d.kv_heads, t % d.kv_heads, kt.get(), s.get(), o.get(),
                       stats.get());
      });
    });
    pace(encoder);
#else
    (void)inputs;
    (void)outputs;
    throw Error(kPlace, "needs an x86-64 processor with AVX2 and FMA");
#endif
  }

  std::vector<mx::array> vjp(const std::vector<mx::array>& primals,
                             const std::vector<mx::array>& cotangents,
                             const std::vector<int>& argnums,
                             const std::vector<mx::array>& outputs) override;

  const char* name() const override {
    return "FusedAttention";
  }

  std::vector<mx::Shape> output_shapes(const std::vector<mx::array>& inputs) override {
    const auto& q = inputs[0].shape();
    return {q, {q[0], q[1], q[2]}};
  }
};

// Inputs q, k, v, the forward's two outputs and the attention's cotangent; outputs dq, dk,
// dv.
class FusedAttentionVJP : public AttentionPrimitive {
 public:
  using AttentionPrimitive::AttentionPrimitive;

  void eval_cpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) override {
#if FT_AVX2_KERNELS
    auto& encoder = prepare(inputs, outputs);
    const Dims d = dims_of(inputs[0], inputs[1], causal_, scale_);
    encoder.dispatch([d, q = operand(inputs[0]), k = operand(inputs[1]), v = operand(inputs[2]),
                      out = inputs[3].data<float>(), lse = inputs[4].data<float>(),
                      dout = operand(inputs[5]), dq = outputs[0].data<float>(),
                      dk = outputs[1].data<float>(), dv = outputs[2].data<float>()] {
      std::vector<float> copies[4];
      const BackwardJob job{d,
                            view_of(q, copies[0]),
                            view_of(k, copies[1]),
                            view_of(v, copies[2]),
                            view_of(dout, copies[3]),
                            out,
                            lse,
                            dq,
                            dk,
                            dv};
      parallel_for(d.batch * d.kv_heads, 1, [&](int64_t begin, int64_t end) {
        Floats kt(d.dim * d.padded_keys()), vt(d.dim * d.padded_keys()), s(kQueryBlock * kKeyBlock),
            dp(kQueryBlock * kKeyBlock), delta(d.length);
        for (int64_t t = begin; t < end; ++t)
          backward_task(job, t / d.kv_heads, t % d.kv_heads, kt.get(), vt.get(), s.get(), dp.get(),
                        delta.get());
      });
    });
    pace(encoder);
#else
    (void)inputs;
    (void)outputs;
    throw Error(kPlace, "needs an x86-64 processor with AVX2 and FMA");
#endif
  }

  const char* name() const override {
    return "FusedAttentionVJP";
  }

  std::vector<mx::Shape> output_shapes(const std::vector<mx::array>& inputs) override {
    return {inputs[0].shape(), inputs[1].shape(), inputs[2].shape()};
  }
};

// The logsumexp output is the backward's and not differentiable: its cotangent is ignored
// (fused_attention returns only the attention).
std::vector<mx::array> FusedAttention::vjp(const std::vector<mx::array>& primals,
                                           const std::vector<mx::array>& cotangents,
                                           const std::vector<int>& argnums,
                                           const std::vector<mx::array>& outputs) {
  const auto s = stream();
  std::vector<mx::array> inputs = primals;
  inputs.push_back(outputs[0]);
  inputs.push_back(outputs[1]);
  inputs.push_back(mx::astype(cotangents[0], mx::float32, s));
  auto grads =
      mx::array::make_arrays({primals[0].shape(), primals[1].shape(), primals[2].shape()},
                             {mx::float32, mx::float32, mx::float32},
                             std::make_shared<FusedAttentionVJP>(s, scale_, causal_), inputs);
  std::vector<mx::array> result;
  for (int i : argnums) result.push_back(grads[i]);
  return result;
}

}  // namespace

bool fused_attention_supported(mx::Dtype dtype, int head_dim, mx::StreamOrDevice s) {
  return avx2_supported() && mx::to_stream(s).device.type == mx::Device::cpu &&
         dtype == mx::float32 && head_dim > 0 && head_dim % 16 == 0 && head_dim <= 256;
}

mx::array fused_attention(const mx::array& q, const mx::array& k, const mx::array& v, float scale,
                          bool causal, mx::Stream s) {
  FT_CHECK(q.ndim() == 4 && k.ndim() == 4 && v.ndim() == 4, kPlace,
           "q, k and v must be 4-D (batch, heads, length, head_dim), got ", q.shape(), ", ",
           k.shape(), ", ", v.shape());
  FT_CHECK(k.shape() == v.shape() && k.shape(0) == q.shape(0) && k.shape(3) == q.shape(3), kPlace,
           "shapes do not fit: q ", q.shape(), ", k ", k.shape(), ", v ", v.shape());
  FT_CHECK(k.shape(1) > 0 && q.shape(1) % k.shape(1) == 0, kPlace,
           "query heads must be a multiple of key heads, got ", q.shape(1), " and ", k.shape(1));
  FT_CHECK(k.dtype() == q.dtype() && v.dtype() == q.dtype(), kPlace,
           "q, k and v must have one dtype, got ", q.dtype(), ", ", k.dtype(), ", ", v.dtype());
  FT_CHECK(k.shape(2) > 0, kPlace, "needs at least one key, got k ", k.shape());
  FT_CHECK(fused_attention_supported(q.dtype(), q.shape(3), s), kPlace,
           "takes float32 with a head dimension that is a multiple of 16 up to 256 on a CPU ",
           "stream of a processor with AVX2 and FMA; got ", q.dtype(), " with head dimension ",
           q.shape(3), " on ", s.device);
  const auto& shape = q.shape();
  auto outputs =
      mx::array::make_arrays({shape, {shape[0], shape[1], shape[2]}}, {mx::float32, mx::float32},
                             std::make_shared<FusedAttention>(s, scale, causal), {q, k, v});
  return outputs[0];
}

}  // namespace ft::kernels::cpu
