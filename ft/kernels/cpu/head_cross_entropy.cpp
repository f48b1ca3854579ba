#include "ft/kernels/cpu/head_cross_entropy.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <future>
#include <limits>
#include <memory>
#include <mutex>
#include <vector>

#include <mlx/allocator.h>            // defines: mx::allocator::malloc
#include <mlx/backend/cpu/encoder.h>  // defines: mx::cpu::get_command_encoder
#include <mlx/ops.h>
#include <mlx/primitives.h>

#include "ft/core/error.h"
#include "ft/kernels/cpu/avx2.h"
#include "ft/kernels/cpu/parallel.h"

namespace ft::kernels::cpu {

// Note [One pass over the vocabulary]
// A frozen head's logits exist only to be reduced: the loss needs each row's logsumexp and
// target logit, and the gradient w.r.t. the hidden state is softmax(z) W - W_t (plus the
// smoothing term). Like attention's online softmax, both follow from one pass over the
// vocabulary in panels. For a block of rows and each panel W_p of the vocabulary:
//   z = h W_p^T;  m' = max(m, max_j z_j);  c = exp(m - m');
//   l = c l + sum_j exp(z_j - m');  o = c o + sum_j exp(z_j - m') W_p,j;  m = m',
// and at the end lse = m + log l and dhidden = o / l - (1 - s) W_t - (s / V) sum_j W_j.
// These are the same two matrix products as with stored logits (no recomputation), but a
// panel's logits, the panel of W and the block's o stay in the core's L2 cache. Chunked
// logits (tens of MiB per chunk on the tiny benchmark, beyond the last-level cache) went to
// memory and back four times between the two products: zeroed and written by the first,
// read by the softmax, written as their gradient, read by the second.
// Layout: the rows are the SIMD lanes. The block's hidden states are transposed into
// groups of 16 rows, so the first product's 6 x 16 tile broadcasts 6 entries of W and loads
// 16 rows' features; its logits come out as (vocabulary, rows), where the maximum, the
// exponentials and the sums run down the vocabulary, 8 rows per vector. The second product
// keeps the rows as lanes: its tile loads 16 rows' exponentials of one vocabulary row and
// broadcasts 6 of that W row's features, so o is kept transposed, (features, rows), and
// every cache line either operand reads is used whole (with the rows 6 at a time as the
// broadcast side, each exponential line gave 6 of its 16 floats). Each product reads W
// packed in a layout of its own (kept between calls, Note [The packed head], or a stretch
// of the vocabulary at a time, packed once per call) and read by every block. A row's
// result depends on the row alone, in a fixed order.

// Note [A lazy reference]
// The online softmax above is exact for any reference m that no logit passes by much: l and o
// both carry the factor exp(-m), which lse = m + log l and o / l undo. So a row's reference
// moves only when a panel's maximum passes it by more than kHeadroom (8: every exponential
// stays below e^8, far from overflow); otherwise c = 1 and o is not rescaled. Past the first
// panels a row's maximum rarely jumps that far, so the pass over o (features x rows per panel)
// is skipped for whole blocks. The panel's maximum comes out of the first product's tiles,
// from their registers, so the logits are read once more (for the exponentials), not twice.

namespace {

constexpr const char* kPlace = "head_cross_entropy";

#if FT_AVX2_KERNELS

constexpr int64_t kGroup = 16;      // rows per group: the first product's two 8-lane vectors
constexpr int64_t kTile = 6;        // W rows per tile of the first product, and rows per tile
                                    // of the second
constexpr int64_t kBlockRows = 96;  // rows per block, a multiple of kGroup
// How far a panel's maximum may pass a row's reference before the reference moves: Note [A
// lazy reference].
constexpr float kHeadroom = 8.0f;

// W rows per panel: about 192 KiB of W, which a block's two products share in L2.
int64_t panel_rows(int64_t hidden) {
  return std::clamp<int64_t>(48 * 1024 / hidden / kTile * kTile, kTile, 192);
}

// W rows per stretch: two panels (about 400 KiB of W in each product's layout for 256
// features), which every block of a thread sweeps before the next stretch, so that W comes
// from memory once per call and from the last-level cache for the other blocks. Small, since
// that cache is shared: with two row shards' passes at once (and whatever else the machine
// runs) a stretch of 2 MiB per layout ran 2 to 5% slower than this one, and no faster alone.
int64_t stretch_rows(int64_t hidden) {
  return 2 * panel_rows(hidden);
}

// Features rounded up to whole tiles of the second product.
int64_t padded_features(int64_t hidden) {
  return (hidden + kTile - 1) / kTile * kTile;
}

struct Job {
  const float* hidden;      // (N, H)
  const float* weight;      // (V, H)
  const int32_t* targets;   // (N,)
  float* loss;              // (N,)
  float* dhidden;           // (N, H) or null
  const float* weight_sum;  // (H,) sum_j W_j, or null without smoothing or gradient
  int64_t vocab;
  int64_t hidden_size;
  float smoothing;
};

// out[i][0..16) = sum_k w[k][i] hidden_t[k][0..16) for a tile of 6 W rows packed as (H, 6),
// out with row stride `stride`; max[0..2) (16 rows' maxima) takes in the first `valid` of them.
FT_AVX2 inline void logits_tile(const float* w, int64_t hidden, const float* hidden_t, float* out,
                                int64_t stride, int64_t valid, __m256* max) {
  __m256 acc[kTile][2];
#pragma GCC unroll 6
  for (int i = 0; i < kTile; ++i) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
    // Unrolled: the loop's own instructions cost about a tenth of the tile's speed (a 6 x 16
    // tile from L1 ran at 75 against 83 GFLOP/s unrolled by two).
#pragma GCC unroll 4
  for (int64_t k = 0; k < hidden; ++k) {
    const __m256 b0 = _mm256_load_ps(hidden_t + kGroup * k);
    const __m256 b1 = _mm256_load_ps(hidden_t + kGroup * k + 8);
#pragma GCC unroll 6
    for (int i = 0; i < kTile; ++i) {
      const __m256 a = _mm256_broadcast_ss(w + kTile * k + i);
      acc[i][0] = _mm256_fmadd_ps(a, b0, acc[i][0]);
      acc[i][1] = _mm256_fmadd_ps(a, b1, acc[i][1]);
    }
  }
#pragma GCC unroll 6
  for (int i = 0; i < kTile; ++i) {
    _mm256_storeu_ps(out + i * stride, acc[i][0]);
    _mm256_storeu_ps(out + i * stride + 8, acc[i][1]);
    if (i < valid) {
      max[0] = _mm256_max_ps(max[0], acc[i][0]);
      max[1] = _mm256_max_ps(max[1], acc[i][1]);
    }
  }
}

// o[f][0..16) += sum_j w[j][f] e[j][0..16) for 6 features f over `count` W rows j: e holds
// 16 rows' exponentials with row stride `stride`, w is packed as (count, 6), o (features,
// rows) has row stride o_stride.
FT_AVX2 inline void gradient_tile(const float* e, int64_t stride, const float* w, int64_t count,
                                  float* o, int64_t o_stride) {
  __m256 acc[kTile][2];
#pragma GCC unroll 6
  for (int f = 0; f < kTile; ++f) {
    acc[f][0] = _mm256_loadu_ps(o + f * o_stride);
    acc[f][1] = _mm256_loadu_ps(o + f * o_stride + 8);
  }
#pragma GCC unroll 4
  for (int64_t j = 0; j < count; ++j) {
    const __m256 e0 = _mm256_loadu_ps(e + j * stride);
    const __m256 e1 = _mm256_loadu_ps(e + j * stride + 8);
#pragma GCC unroll 6
    for (int f = 0; f < kTile; ++f) {
      const __m256 a = _mm256_broadcast_ss(w + kTile * j + f);
      acc[f][0] = _mm256_fmadd_ps(a, e0, acc[f][0]);
      acc[f][1] = _mm256_fmadd_ps(a, e1, acc[f][1]);
    }
  }
#pragma GCC unroll 6
  for (int f = 0; f < kTile; ++f) {
    _mm256_storeu_ps(o + f * o_stride, acc[f][0]);
    _mm256_storeu_ps(o + f * o_stride + 8, acc[f][1]);
  }
}

// dst[k][i] = w[i][k] for the `rows` (<= 6) W rows of a tile, zero for i >= rows: the
// (H, 6) layout of the first product, 8 features at a time through an 8 x 8 transpose. Each
// store writes 8 floats of which the next store overwrites the last 2; the tile's last store
// writes only its 6.
FT_AVX2 inline void pack_tile(const float* w, int64_t hidden, int64_t rows, float* dst) {
  for (int64_t k = 0; k < hidden; k += 8) {
    __m256 r[8];
    for (int i = 0; i < 8; ++i)
      r[i] = i < rows ? _mm256_loadu_ps(w + i * hidden + k) : _mm256_setzero_ps();
    const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    const __m256 columns[8] = {
        _mm256_permute2f128_ps(u0, u4, 0x20), _mm256_permute2f128_ps(u1, u5, 0x20),
        _mm256_permute2f128_ps(u2, u6, 0x20), _mm256_permute2f128_ps(u3, u7, 0x20),
        _mm256_permute2f128_ps(u0, u4, 0x31), _mm256_permute2f128_ps(u1, u5, 0x31),
        _mm256_permute2f128_ps(u2, u6, 0x31), _mm256_permute2f128_ps(u3, u7, 0x31)};
    for (int c = 0; c < 8; ++c) {
      float* out = dst + (k + c) * kTile;
      if (k + c + 1 < hidden) {
        _mm256_storeu_ps(out, columns[c]);
      } else {
        const __m256i six = _mm256_setr_epi32(-1, -1, -1, -1, -1, -1, 0, 0);
        _mm256_maskstore_ps(out, six, columns[c]);
      }
    }
  }
}

// W rows [first, first + count) of weight (V, hidden) in the two products' layouts: into
// weight_a for the first, tiles of 6 rows as (H, 6), zero past the vocabulary; with `both`,
// into weight_b for the second, each panel of `panel` rows as (H / 6, rows, 6) slices of 6
// features (H rounded up to 6s, the padding zero).
FT_AVX2 void pack_weight(const float* weight, int64_t hidden, int64_t panel, bool both,
                         int64_t first, int64_t count, float* weight_a, float* weight_b) {
  const float* w = weight + first * hidden;
  const int64_t tiles = (count + kTile - 1) / kTile;
  parallel_for(tiles, 16, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t)
      pack_tile(w + t * kTile * hidden, hidden, std::min(kTile, count - t * kTile),
                weight_a + t * kTile * hidden);
  });
  if (!both) return;
  // Each store writes 8 floats, of which the next row's store overwrites the last 2; a
  // slice's last row writes only its 6.
  const int64_t features = padded_features(hidden);
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i six = _mm256_cmpgt_epi32(_mm256_set1_epi32(kTile), lane);
  for (int64_t p = 0; p < count; p += panel) {
    const int64_t rows = std::min(panel, count - p);
    float* wb = weight_b + p * features;
    for (int64_t j = 0; j < rows; ++j)
      for (int64_t f = 0; f < hidden; f += kTile) {
        const float* src = w + (p + j) * hidden + f;
        const __m256 v = f + 8 <= hidden
                             ? _mm256_loadu_ps(src)
                             : _mm256_maskload_ps(
                                   src, _mm256_cmpgt_epi32(
                                            _mm256_set1_epi32(static_cast<int>(hidden - f)), lane));
        float* dst = wb + (f * rows + kTile * j);
        if (j + 1 < rows)
          _mm256_storeu_ps(dst, v);
        else
          _mm256_maskstore_ps(dst, six, v);
      }
  }
}

// Note [The packed head]
// A frozen head's W is the same array call after call (every step, every row shard), and
// packing it costs about a sixteenth of the head's time (the tiny bench: 15 of 250 ms per
// shard). So W packed whole in both layouts is kept for the next call while it fits a budget
// (set_head_cross_entropy_packing_budget, 256 MiB at first; the tiny bench's W takes 66 MB):
// one entry for the process, made by the first call that finds none for its W and shared by
// calls running at once. The entry holds the mx::array W, which keeps W's buffer alive and,
// as a second reference, keeps MLX from donating it to another op's output, so equal data
// pointers mean equal contents. (So a W that training replaces keeps its old buffer alive
// until the next call replaces the entry.) A larger W is packed a stretch at a time in every
// call.
struct PackedWeight {
  mx::array weight;
  int64_t vocab, hidden;
  Floats a, b;
};

std::atomic<int64_t> g_packed_budget{int64_t{256} << 20};  // bytes of both layouts

int64_t packed_bytes(int64_t vocab, int64_t hidden) {
  const int64_t rows = (vocab + kTile - 1) / kTile * kTile;
  return (rows * hidden + vocab * padded_features(hidden)) * int64_t{sizeof(float)};
}

// Never destroyed: calls may run while the process's statics go.
std::mutex& packing_mutex() {
  static std::mutex& mutex = *new std::mutex;
  return mutex;
}
std::shared_ptr<const PackedWeight>& packed_entry() {
  static auto& entry = *new std::shared_ptr<const PackedWeight>;
  return entry;
}

// The packed W for this call's weight, made if there is none; null past the budget.
std::shared_ptr<const PackedWeight> packed_weight(const mx::array& weight) {
  const int64_t vocab = weight.shape(0), hidden = weight.shape(1);
  if (packed_bytes(vocab, hidden) > g_packed_budget.load()) return nullptr;
  std::lock_guard lock(packing_mutex());
  std::shared_ptr<const PackedWeight>& entry = packed_entry();
  if (entry && entry->weight.data<float>() == weight.data<float>() && entry->vocab == vocab &&
      entry->hidden == hidden)
    return entry;
  entry.reset();  // frees the old entry before the new one is made
  const int64_t rows = (vocab + kTile - 1) / kTile * kTile;
  auto made = std::make_shared<PackedWeight>(PackedWeight{
      weight, vocab, hidden, Floats(rows * hidden), Floats(vocab * padded_features(hidden))});
  pack_weight(weight.data<float>(), hidden, panel_rows(hidden), true, 0, vocab, made->a.get(),
              made->b.get());
  entry = made;
  return made;
}

// The state of a call: its rows in blocks of kBlockRows and, unless W is kept packed whole, a
// stretch of W packed for the two products. Block b holds rows[b * kBlockRows, ...) of the rows
// with a target.
class HeadPass {
 public:
  // packed: W already packed in both layouts for the whole vocabulary (Note [The packed
  // head]), or null to pack a stretch at a time.
  HeadPass(const Job& job, std::vector<int64_t> rows, const PackedWeight* packed)
      : job_(job),
        packed_(packed),
        hidden_(job.hidden_size),
        panel_(panel_rows(hidden_)),
        stretch_(stretch_rows(hidden_)),
        rows_(std::move(rows)),
        blocks_((static_cast<int64_t>(rows_.size()) + kBlockRows - 1) / kBlockRows),
        grad_(job.dhidden != nullptr),
        hidden_t_(blocks_ * kBlockRows * hidden_),
        acc_(grad_ ? blocks_ * padded_features(hidden_) * kBlockRows : 0),
        weight_a_(packed ? 0 : stretch_ * hidden_),
        weight_b_(grad_ && !packed ? stretch_ * padded_features(hidden_) : 0),
        stats_(kStats * blocks_ * kBlockRows),
        targets_(blocks_ * kBlockRows, -1) {}

  void run() {
    if (packed_) {
      // Each thread runs its blocks from start to finish, with no barrier between stretches.
      parallel_for(blocks_, 1, [&](int64_t begin, int64_t end) {
        for (int64_t b = begin; b < end; ++b) start_block(b);
        Floats logits(panel_ * kBlockRows + kTile);
        for (int64_t first = 0; first < job_.vocab; first += stretch_)
          sweep(begin, end, first, packed_->a.get() + first * hidden_,
                packed_->b.get() + first * padded_features(hidden_), logits.get());
        for (int64_t b = begin; b < end; ++b) finish_block(b);
      });
      return;
    }
    parallel_for(blocks_, 1, [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b) start_block(b);
    });
    for (int64_t first = 0; first < job_.vocab; first += stretch_) {
      // The stretch is packed once, for every thread's blocks.
      pack_weight(job_.weight, hidden_, panel_, grad_, first,
                  std::min(stretch_, job_.vocab - first), weight_a_.get(), weight_b_.get());
      parallel_for(blocks_, 1, [&](int64_t begin, int64_t end) {
        Floats logits(panel_ * kBlockRows + kTile);
        sweep(begin, end, first, weight_a_.get(), weight_b_.get(), logits.get());
      });
    }
    parallel_for(blocks_, 1, [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b) finish_block(b);
    });
  }

  static constexpr int64_t kStats = 5;  // reference, sum, sum of logits, target logit, rescale

 private:
  int64_t rows_in(int64_t b) const {
    return std::min(kBlockRows, static_cast<int64_t>(rows_.size()) - b * kBlockRows);
  }
  // R: the block's rows padded to whole groups.
  int64_t width(int64_t b) const { return (rows_in(b) + kGroup - 1) / kGroup * kGroup; }
  float* stat(int64_t b, int64_t which) const {
    return stats_.get() + (b * kStats + which) * kBlockRows;
  }

  // Blocks [begin, end) over the stretch of W rows from `first`, packed in the two layouts at
  // wa and wb.
  void sweep(int64_t begin, int64_t end, int64_t first, const float* wa, const float* wb,
             float* logits) {
    const int64_t count = std::min(stretch_, job_.vocab - first);
    const int64_t features = padded_features(hidden_);
    for (int64_t b = begin; b < end; ++b)
      for (int64_t p = first; p < first + count; p += panel_)
        panel(b, p, std::min(panel_, first + count - p), wa + (p - first) * hidden_,
              wb + (p - first) * features, logits);
  }

  // The block's hidden states, transposed into groups of 16 rows: (R / 16, H, 16).
  FT_AVX2 void start_block(int64_t b) {
    const int64_t n = rows_in(b), r_pad = width(b);
    float* hidden_t = hidden_t_.get() + b * kBlockRows * hidden_;
    for (int64_t r = 0; r < r_pad; ++r) {
      float* dst = hidden_t + (r / kGroup) * hidden_ * kGroup + r % kGroup;
      const float* src = r < n ? job_.hidden + rows_[b * kBlockRows + r] * hidden_ : nullptr;
      for (int64_t k = 0; k < hidden_; ++k) dst[k * kGroup] = src ? src[k] : 0.0f;
      stat(b, 0)[r] = -std::numeric_limits<float>::infinity();
      stat(b, 1)[r] = stat(b, 2)[r] = stat(b, 3)[r] = 0.0f;
      if (r < n) targets_[b * kBlockRows + r] = job_.targets[rows_[b * kBlockRows + r]];
    }
    if (grad_) {
      const int64_t size = padded_features(hidden_) * kBlockRows;
      std::fill(acc_.get() + b * size, acc_.get() + (b + 1) * size, 0.0f);
    }
  }

  // Block b over the panel of W rows [start, start + count), packed at wa and wb: Note [One
  // pass over the vocabulary]. logits: (panel, R) and a tile to spare.
  FT_AVX2 void panel(int64_t b, int64_t start, int64_t count, const float* wa, const float* wb,
                     float* logits) {
    const int64_t n = rows_in(b), r_pad = width(b);
    const float* hidden_t = hidden_t_.get() + b * kBlockRows * hidden_;
    const int32_t* targets = targets_.data() + b * kBlockRows;
    float *reference = stat(b, 0), *sum = stat(b, 1), *sum_z = stat(b, 2), *target_z = stat(b, 3),
          *rescale = stat(b, 4);

    // The panel's logits, (count, R), in whole tiles of 6 (the buffer has room), and each row's
    // maximum over them.
    __m256 panel_max[kBlockRows / 8];
    for (auto& m : panel_max) m = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
    for (int64_t j = 0; j < count; j += kTile)
      for (int64_t g = 0; g < r_pad; g += kGroup)
        logits_tile(wa + j * hidden_, hidden_, hidden_t + g * hidden_, logits + j * r_pad + g,
                    r_pad, count - j, panel_max + g / 8);
    for (int64_t r = 0; r < n; ++r)
      if (targets[r] >= start && targets[r] < start + count)
        target_z[r] = logits[(targets[r] - start) * r_pad + r];

    // The running statistics, 8 rows at a time; the logits become exp(z - m). Note [A lazy
    // reference]: m moves only when the panel's maximum passes it by more than kHeadroom.
    const bool smoothing = job_.smoothing > 0.0f;
    const __m256 headroom = _mm256_set1_ps(kHeadroom), one = _mm256_set1_ps(1.0f);
    int raised = 0;
    for (int64_t r = 0; r < r_pad; r += 8) {
      const __m256 old_ref = _mm256_loadu_ps(reference + r);
      const __m256 top = panel_max[r / 8];
      const __m256 raise = _mm256_cmp_ps(top, _mm256_add_ps(old_ref, headroom), _CMP_GT_OQ);
      raised |= _mm256_movemask_ps(raise);
      const __m256 ref = _mm256_blendv_ps(old_ref, top, raise);
      __m256 e_sum = _mm256_setzero_ps(), z_sum = _mm256_setzero_ps();
      for (int64_t j = 0; j < count; ++j) {
        float* z = logits + j * r_pad + r;
        const __m256 zj = _mm256_loadu_ps(z);
        if (smoothing) z_sum = _mm256_add_ps(z_sum, zj);
        const __m256 e = exp8_normal(_mm256_sub_ps(zj, ref));  // z - ref <= kHeadroom
        _mm256_storeu_ps(z, e);
        e_sum = _mm256_add_ps(e_sum, e);
      }
      const __m256 c = _mm256_blendv_ps(one, exp8_normal(_mm256_sub_ps(old_ref, ref)), raise);
      _mm256_storeu_ps(sum + r, _mm256_fmadd_ps(_mm256_loadu_ps(sum + r), c, e_sum));
      _mm256_storeu_ps(sum_z + r, _mm256_add_ps(_mm256_loadu_ps(sum_z + r), z_sum));
      _mm256_storeu_ps(reference + r, ref);
      _mm256_storeu_ps(rescale + r, c);
    }
    if (!grad_) return;

    // o = c o + e W_p, kept as (features, rows): 16 rows by 6 features at a time, a group's
    // exponentials (count x 16) staying in L1 while the panel's feature slices go by.
    const int64_t features = padded_features(hidden_);
    float* o = acc_.get() + b * features * kBlockRows;
    for (int64_t k = 0; raised && k < hidden_; ++k)
      for (int64_t r = 0; r < r_pad; r += 8)
        _mm256_storeu_ps(
            o + k * kBlockRows + r,
            _mm256_mul_ps(_mm256_loadu_ps(rescale + r), _mm256_loadu_ps(o + k * kBlockRows + r)));
    for (int64_t g = 0; g < r_pad; g += kGroup)
      for (int64_t f = 0; f < hidden_; f += kTile)
        gradient_tile(logits + g, r_pad, wb + f * count, count, o + f * kBlockRows + g, kBlockRows);
  }

  // The loss and gradient of block b's rows.
  void finish_block(int64_t b) {
    const float s = job_.smoothing;
    const float uniform = s / static_cast<float>(job_.vocab);
    const float* o = grad_ ? acc_.get() + b * padded_features(hidden_) * kBlockRows : nullptr;
    for (int64_t r = 0; r < rows_in(b); ++r) {
      const int64_t row = rows_[b * kBlockRows + r];
      const int32_t t = targets_[b * kBlockRows + r];
      const bool in_range = t >= 0 && t < job_.vocab;
      const float lse = stat(b, 0)[r] + std::log(stat(b, 1)[r]);
      job_.loss[row] = in_range
                           ? lse - (1.0f - s) * stat(b, 3)[r] - s * (stat(b, 2)[r] / job_.vocab)
                           : std::numeric_limits<float>::quiet_NaN();
      if (!grad_) continue;
      float* dh = job_.dhidden + row * hidden_;
      const float inv_sum = 1.0f / stat(b, 1)[r];
      const float* wt = in_range ? job_.weight + t * hidden_ : nullptr;
      for (int64_t k = 0; k < hidden_; ++k) {
        float g = o[k * kBlockRows + r] * inv_sum;
        if (wt) g -= (1.0f - s) * wt[k];
        if (job_.weight_sum) g -= uniform * job_.weight_sum[k];
        dh[k] = g;
      }
    }
  }

  const Job& job_;
  const PackedWeight* packed_;
  const int64_t hidden_, panel_, stretch_;
  const std::vector<int64_t> rows_;
  const int64_t blocks_;
  const bool grad_;
  Floats hidden_t_;  // per block (R / 16, H, 16)
  Floats acc_;       // per block (H padded to 6s, kBlockRows): o
  Floats weight_a_;  // the stretch's tiles of 6 W rows, each (H, 6)
  Floats weight_b_;  // the stretch's panels, each (H padded to 6s / 6, rows, 6)
  Floats stats_;     // per block kStats x kBlockRows
  std::vector<int32_t> targets_;
};

void run(const Job& job, const mx::array& weight, int64_t num_rows, int ignore_index) {
  std::vector<int64_t> rows;  // the rows with a target; the others get 0 and a zero gradient
  rows.reserve(num_rows);
  for (int64_t r = 0; r < num_rows; ++r) {
    if (job.targets[r] != ignore_index) {
      rows.push_back(r);
      continue;
    }
    job.loss[r] = 0.0f;
    if (job.dhidden)
      std::fill(job.dhidden + r * job.hidden_size, job.dhidden + (r + 1) * job.hidden_size, 0.0f);
  }
  if (rows.empty()) return;
  const std::shared_ptr<const PackedWeight> packed = packed_weight(weight);
  HeadPass(job, std::move(rows), packed.get()).run();
}

#endif  // FT_AVX2_KERNELS

class HeadCrossEntropy : public CrossEntropyPrimitive {
 public:
  HeadCrossEntropy(mx::Stream stream, const HeadCrossEntropyOptions& options)
      : CrossEntropyPrimitive(stream, options, kPlace) {}

  void eval_cpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) override {
#if FT_AVX2_KERNELS
    const mx::array& hidden = inputs[0];   // (N, H) row-contiguous float32
    const mx::array& weight = inputs[1];   // (V, H) row-contiguous float32
    const mx::array& targets = inputs[2];  // (N,) int32
    for (auto& out : outputs) out.set_data(mx::allocator::malloc(out.nbytes()));
    auto& encoder = mx::cpu::get_command_encoder(stream());
    encoder.set_input_array(hidden);
    encoder.set_input_array(weight);
    encoder.set_input_array(targets);
    for (auto& out : outputs) encoder.set_output_array(out);
    Job job{hidden.data<float>(),
            weight.data<float>(),
            targets.data<int32_t>(),
            outputs[0].data<float>(),
            outputs.size() > 1 ? outputs[1].data<float>() : nullptr,
            nullptr,
            weight.shape(0),
            weight.shape(1),
            options_.label_smoothing};
    const int64_t num_rows = hidden.shape(0);
    const int ignore_index = options_.ignore_index;
    encoder.dispatch([job, weight, num_rows, ignore_index]() mutable {
      std::vector<float> weight_sum;
      if (job.dhidden && job.smoothing > 0.0f) {
        weight_sum.assign(job.hidden_size, 0.0f);
        for (int64_t j = 0; j < job.vocab; ++j)
          for (int64_t k = 0; k < job.hidden_size; ++k)
            weight_sum[k] += job.weight[j * job.hidden_size + k];
        job.weight_sum = weight_sum.data();
      }
      run(job, weight, num_rows, ignore_index);
    });
    // Note [Waiting for a long task]
    // MLX's eval runs ahead of the streams' workers, but only while fewer than a fixed number
    // of tasks are in flight in the whole process. This task is long (the head's whole
    // forward and backward); if eval went on dispatching this stream's next tasks behind it,
    // they would fill that budget, and the evaluation of another row shard, on a stream of
    // its own, would wait for this task to end (measured: the shards' head passes ran one
    // after the other, not at once). So this eval returns only when the task is done.
    std::promise<void> done;
    encoder.dispatch([&done] { done.set_value(); });
    done.get_future().wait();
#else
    (void)inputs;
    (void)outputs;
    throw Error(kPlace, "needs an x86-64 processor with AVX2 and FMA");
#endif
  }

  const char* name() const override {
    return "HeadCrossEntropy";
  }
};

}  // namespace

size_t head_cross_entropy_scratch_bytes(int64_t rows, int64_t hidden_size, int64_t vocab) {
#if FT_AVX2_KERNELS
  const int64_t padded = (rows + kBlockRows - 1) / kBlockRows * kBlockRows;
  const bool packed = head_cross_entropy_packed_bytes(vocab, hidden_size) > 0;
  const int64_t floats =
      padded * hidden_size                     // the transposed hidden states
      + padded * padded_features(hidden_size)  // o
      + (packed ? 0 : stretch_rows(hidden_size) * (hidden_size + padded_features(hidden_size))) +
      panel_rows(hidden_size) * kBlockRows + kTile  // a panel's logits
      + HeadPass::kStats * padded;
  return static_cast<size_t>(floats) * sizeof(float) + padded * (sizeof(int32_t) + sizeof(int64_t));
#else
  (void)rows;
  (void)hidden_size;
  (void)vocab;
  return 0;
#endif
}

size_t head_cross_entropy_packed_bytes(int64_t vocab, int64_t hidden_size) {
#if FT_AVX2_KERNELS
  const int64_t bytes = packed_bytes(vocab, hidden_size);
  return bytes <= g_packed_budget.load() ? static_cast<size_t>(bytes) : 0;
#else
  (void)vocab;
  (void)hidden_size;
  return 0;
#endif
}

void release_head_cross_entropy_packing() {
#if FT_AVX2_KERNELS
  std::lock_guard lock(packing_mutex());
  packed_entry().reset();
#endif
}

int64_t set_head_cross_entropy_packing_budget(int64_t bytes) {
#if FT_AVX2_KERNELS
  release_head_cross_entropy_packing();
  return g_packed_budget.exchange(std::max<int64_t>(0, bytes));
#else
  (void)bytes;
  return 0;
#endif
}

bool head_cross_entropy_supported(mx::Dtype hidden, mx::Dtype weight, int hidden_size,
                                  mx::StreamOrDevice s) {
  return avx2_supported() && mx::to_stream(s).device.type == mx::Device::cpu &&
         hidden == mx::float32 && weight == mx::float32 && hidden_size > 0 && hidden_size % 16 == 0;
}

std::vector<mx::array> head_cross_entropy(const mx::array& hidden, const mx::array& weight,
                                          const mx::array& targets,
                                          const HeadCrossEntropyOptions& options,
                                          mx::StreamOrDevice s) {
  const auto stream = mx::to_stream(s);
  FT_CHECK(hidden.ndim() == 2 && weight.ndim() == 2, kPlace,
           "hidden must be (rows, H) and weight (V, H), got shapes ", hidden.shape(), " and ",
           weight.shape());
  FT_CHECK(hidden.shape(1) == weight.shape(1), kPlace, "hidden has ", hidden.shape(1),
           " features but weight has ", weight.shape(1));
  FT_CHECK(targets.ndim() == 1 && targets.shape(0) == hidden.shape(0), kPlace,
           "targets have shape ", targets.shape(), " but hidden has ", hidden.shape(0), " rows");
  FT_CHECK(mx::issubdtype(targets.dtype(), mx::integer), kPlace,
           "targets must be integer token ids, got ", targets.dtype());
  FT_CHECK(weight.shape(0) > 0, kPlace, "weight has no vocabulary rows");
  FT_CHECK(head_cross_entropy_supported(hidden.dtype(), weight.dtype(), hidden.shape(1), stream),
           kPlace, "takes float32 hidden and weight with a multiple of 16 features on a CPU stream",
           " of a processor with AVX2 and FMA, got ", hidden.dtype(), " and ", weight.dtype(),
           " with ", hidden.shape(1), " features on ", stream.device);
  FT_CHECK(options.label_smoothing >= 0.0f && options.label_smoothing <= 1.0f, kPlace,
           "label_smoothing must be in [0, 1], got ", options.label_smoothing);
  std::vector<mx::array> inputs{
      mx::contiguous(hidden, false, stream), mx::contiguous(weight, false, stream),
      mx::contiguous(mx::astype(targets, mx::int32, stream), false, stream)};
  std::vector<mx::Shape> shapes{{hidden.shape(0)}};
  std::vector<mx::Dtype> dtypes{mx::float32};
  if (options.with_grad) {
    shapes.push_back(hidden.shape());
    dtypes.push_back(mx::float32);
  }
  return mx::array::make_arrays(std::move(shapes), dtypes,
                                std::make_shared<HeadCrossEntropy>(stream, options), inputs);
}

}  // namespace ft::kernels::cpu
