// Batches and packed rows built from synthetic samples whose token values encode
// (sample, position), so every cell can be checked against where it came from.
#include <gtest/gtest.h>

#include <algorithm>
#include <set>

#include "ft/core/error.h"
#include "ft/data/batching.h"
#include "ft/data/packing.h"

namespace {

using ft::data::Batch;
using ft::data::Batcher;
using ft::data::BatchOptions;
using ft::data::kIgnoreIndex;
using ft::data::Position;
using ft::data::TokenizedData;

// Sample k has lengths[k] tokens valued 1000 * (k + 1) + t; token t is trained when
// t % 3 != 1 (so some targets are masked).
TokenizedData make_data(const std::vector<int>& lengths) {
  TokenizedData d;
  for (size_t k = 0; k < lengths.size(); ++k) {
    ft::data::Sample s;
    for (int t = 0; t < lengths[k]; ++t) {
      s.ids.push_back(int32_t(1000 * (k + 1) + t));
      s.mask.push_back(t % 3 != 1);
    }
    d.add(s, int64_t(k + 1));
  }
  return d;
}

std::vector<int> some_lengths() {
  std::vector<int> out;
  for (int k = 0; k < 37; ++k) out.push_back(2 + (k * 7919) % 29);
  return out;
}

// Every cell agrees with the sample it came from.
void check_cells(const Batch& b, const TokenizedData& d) {
  ASSERT_EQ(b.inputs.size(), size_t(b.rows) * b.length);
  int64_t trained = 0;
  for (int r = 0; r < b.rows; ++r) {
    for (int c = 0; c < b.length; ++c) {
      size_t cell = size_t(r) * b.length + c;
      int32_t seg = b.segment_ids[cell];
      if (seg == 0) {
        EXPECT_EQ(b.targets[cell], kIgnoreIndex);
        continue;
      }
      int32_t in = b.inputs[cell];
      int k = in / 1000 - 1;
      int t = in % 1000;
      EXPECT_EQ(b.positions[cell], t);
      ASSERT_LT(t + 1, d.length(k));
      int32_t expect = (t + 1) % 3 != 1 ? in + 1 : kIgnoreIndex;
      EXPECT_EQ(b.targets[cell], expect);
      trained += b.targets[cell] != kIgnoreIndex;
    }
  }
  EXPECT_EQ(trained, b.trained_tokens);
}

}  // namespace

TEST(Batching, PermutationIsAPermutationAndSeeded) {
  auto p = ft::data::permutation(100, 7);
  auto sorted = p;
  std::sort(sorted.begin(), sorted.end());
  for (int i = 0; i < 100; ++i) EXPECT_EQ(sorted[i], i);
  EXPECT_EQ(p, ft::data::permutation(100, 7));
  EXPECT_NE(p, ft::data::permutation(100, 8));
}

TEST(Batching, PaddedBatchesCoverEachSampleOncePerEpoch) {
  auto d = make_data(some_lengths());
  BatchOptions o;
  o.batch_size = 4;
  o.seed = 3;
  Batcher batcher(d, o);
  ASSERT_EQ(batcher.batches_per_epoch(), 10);  // ceil(37 / 4)
  std::multiset<int64_t> seen;
  for (int64_t i = 0; i < batcher.batches_per_epoch(); ++i) {
    Batch b = batcher.batch({0, i});
    EXPECT_EQ(b.length % 8, 0);
    int64_t longest = 0;
    for (int64_t k : b.samples) longest = std::max(longest, d.length(k) - 1);
    EXPECT_EQ(b.length, (longest + 7) / 8 * 8);
    check_cells(b, d);
    // One sample per row, starting at column 0.
    for (int r = 0; r < b.rows; ++r) EXPECT_EQ(b.inputs[size_t(r) * b.length] % 1000, 0);
    seen.insert(b.samples.begin(), b.samples.end());
  }
  EXPECT_EQ(seen.size(), 37u);
  EXPECT_EQ(std::set<int64_t>(seen.begin(), seen.end()).size(), 37u);
}

TEST(Batching, BucketingNeedsLessPaddingThanRandomBatches) {
  auto d = make_data(some_lengths());
  BatchOptions o;
  o.batch_size = 4;
  o.pad_multiple = 1;
  Batcher batcher(d, o);
  int64_t padded = 0;
  for (int64_t i = 0; i < batcher.batches_per_epoch(); ++i) {
    Batch b = batcher.batch({0, i});
    padded += int64_t(b.rows) * b.length;
  }
  // Consecutive samples of the file order, as an unsorted reference.
  int64_t naive = 0;
  auto lengths = some_lengths();
  for (size_t i = 0; i < lengths.size(); i += 4) {
    int longest = 0;
    size_t end = std::min(lengths.size(), i + 4);
    for (size_t k = i; k < end; ++k) longest = std::max(longest, lengths[k] - 1);
    naive += int64_t(end - i) * longest;
  }
  EXPECT_LT(padded, naive);
}

TEST(Batching, OrderIsDeterministicPerSeedAndEpochAndResumable) {
  auto d = make_data(some_lengths());
  BatchOptions o;
  o.batch_size = 3;
  o.seed = 11;
  Batcher a(d, o), b(d, o);
  EXPECT_EQ(a.plan(0), b.plan(0));
  EXPECT_NE(a.plan(0), a.plan(1));
  o.seed = 12;
  EXPECT_NE(a.plan(0), Batcher(d, o).plan(0));
  // Walking with next() from the start and jumping straight to a position agree.
  Position at;
  for (int i = 0; i < 20; ++i) at = a.next(at);
  EXPECT_EQ(at, (Position{1, 20 - a.batches_per_epoch()}));
  Batch walked = a.batch(at);
  Batch direct = b.batch({1, 20 - b.batches_per_epoch()});
  EXPECT_EQ(walked.inputs, direct.inputs);
  EXPECT_EQ(walked.targets, direct.targets);
  EXPECT_THROW(a.batch({0, a.batches_per_epoch()}), ft::Error);
}

// Note [Padded lengths on a ladder]: a batch is padded to a multiple of pad_multiple and of
// the largest power of two at most an eighth of its longest row, so lengths from 50 to 2000
// give few distinct shapes, each less than an eighth longer than its longest row.
TEST(Batching, PaddedLengthsStayOnALadder) {
  std::vector<int> lengths;
  for (int k = 0; k < 400; ++k) lengths.push_back(51 + (k * 7919) % 1950);
  TokenizedData d = make_data(lengths);
  for (bool pack : {false, true}) {
    BatchOptions o;
    o.batch_size = 3;
    o.pack = pack;
    o.max_seq_length = 2048;
    Batcher batcher(d, o);
    std::set<int> shapes;
    for (int64_t i = 0; i < batcher.batches_per_epoch(); ++i) {
      Batch b = batcher.batch({0, i});
      int longest = 0;
      for (int r = 0; r < b.rows; ++r) {
        int used = 0;
        for (int c = 0; c < b.length; ++c) used += b.segment_ids[size_t(r) * b.length + c] != 0;
        longest = std::max(longest, used);
      }
      EXPECT_EQ(b.length % o.pad_multiple, 0);
      EXPECT_GE(b.length, longest);
      EXPECT_LT(b.length, longest + std::max(o.pad_multiple, longest / 8 + 1)) << longest;
      shapes.insert(b.length);
    }
    // 50 to 2000 spans six octaves: at most eight lengths in each.
    EXPECT_LE(shapes.size(), 48u) << "pack " << pack;
    if (!pack) {
      EXPECT_GE(shapes.size(), 20u);  // the lengths do vary
    }
  }
}

TEST(Batching, PackedRowsKeepSamplesApart) {
  auto d = make_data(some_lengths());
  BatchOptions o;
  o.batch_size = 2;
  o.pack = true;
  o.max_seq_length = 40;
  o.seed = 5;
  Batcher batcher(d, o);
  std::multiset<int64_t> seen;
  int64_t rows = 0;
  for (int64_t i = 0; i < batcher.batches_per_epoch(); ++i) {
    Batch b = batcher.batch({0, i});
    EXPECT_EQ(b.length % 8, 0);
    EXPECT_LE(b.length, 40);
    check_cells(b, d);
    for (int r = 0; r < b.rows; ++r) {
      ++rows;
      // Segments are 1, 2, ... in order; positions restart at 0 with each; padding only
      // at the end; each segment is one whole sample.
      int32_t prev_seg = 0;
      int32_t prev_in = -1;
      for (int c = 0; c < b.length; ++c) {
        size_t cell = size_t(r) * b.length + c;
        int32_t seg = b.segment_ids[cell];
        if (seg == 0) {
          for (int c2 = c; c2 < b.length; ++c2)
            EXPECT_EQ(b.segment_ids[size_t(r) * b.length + c2], 0);
          break;
        }
        if (seg != prev_seg) {
          EXPECT_EQ(seg, prev_seg + 1);
          EXPECT_EQ(b.positions[cell], 0);
          if (prev_in >= 0) {
            int k = prev_in / 1000 - 1;
            EXPECT_EQ(prev_in % 1000, d.length(k) - 2);  // the previous sample ended whole
          }
        } else {
          EXPECT_EQ(b.inputs[cell], prev_in + 1);
        }
        prev_seg = seg;
        prev_in = b.inputs[cell];
      }
    }
    seen.insert(b.samples.begin(), b.samples.end());
  }
  EXPECT_EQ(seen.size(), 37u);
  EXPECT_EQ(std::set<int64_t>(seen.begin(), seen.end()).size(), 37u);
  int64_t positions = 0;
  for (size_t k = 0; k < d.size(); ++k) positions += d.length(k) - 1;
  EXPECT_LT(rows, 37);                     // samples share rows
  EXPECT_GE(rows, (positions + 39) / 40);  // and no row holds more than 40
}

TEST(Batching, PackRowsFirstFit) {
  auto rows = ft::data::pack_rows({5, 6, 4, 3, 2}, 10);
  EXPECT_EQ(rows, (std::vector<std::vector<int64_t>>{{0, 2}, {1, 3}, {4}}));
  EXPECT_THROW(ft::data::pack_rows({11}, 10), ft::Error);
  // Against a plain scan over the rows, on many lengths.
  std::vector<int64_t> lengths;
  for (int i = 0; i < 1000; ++i) lengths.push_back(1 + (i * 2654435761u) % 97);
  std::vector<std::vector<int64_t>> naive;
  std::vector<int64_t> room;
  for (size_t i = 0; i < lengths.size(); ++i) {
    size_t r = 0;
    while (r < naive.size() && room[r] < lengths[i]) ++r;
    if (r == naive.size()) {
      naive.emplace_back();
      room.push_back(100);
    }
    naive[r].push_back(int64_t(i));
    room[r] -= lengths[i];
  }
  EXPECT_EQ(ft::data::pack_rows(lengths, 100), naive);
}

TEST(Batching, StreamedWriterMatchesInMemoryData) {
  auto d = make_data(some_lengths());
  auto file = std::filesystem::temp_directory_path() / "ft_data_test_writer.tok";
  {
    ft::data::TokenizedWriter abandoned(file);
    ft::data::Sample s{{1, 2}, {1, 1}, false};
    abandoned.add(s, 1);
  }
  EXPECT_FALSE(std::filesystem::exists(file));
  ft::data::TokenizedWriter w(file);
  for (size_t k = 0; k < d.size(); ++k) {
    ft::data::Sample s{
        {d.ids(k).begin(), d.ids(k).end()}, {d.mask(k).begin(), d.mask(k).end()}, false};
    w.add(s, d.line(k));
  }
  w.finish();
  auto m = TokenizedData::map(file);
  ASSERT_EQ(m.size(), d.size());
  for (size_t k = 0; k < d.size(); ++k) {
    EXPECT_TRUE(std::ranges::equal(m.ids(k), d.ids(k)));
    EXPECT_TRUE(std::ranges::equal(m.mask(k), d.mask(k)));
    EXPECT_EQ(m.line(k), d.line(k));
  }
  std::filesystem::remove(file);
}

TEST(Batching, ToMxHasTheBatchShape) {
  auto d = make_data({5, 9});
  BatchOptions o;
  o.batch_size = 2;
  o.shuffle = false;
  Batch b = Batcher(d, o).batch({0, 0});
  auto a = ft::data::to_mx(b.inputs, b);
  EXPECT_EQ(a.shape(), (mlx::core::Shape{2, 8}));
  EXPECT_EQ(a.dtype(), mlx::core::int32);
  EXPECT_EQ(a.data<int32_t>()[0], b.inputs[0]);
}

TEST(Batching, SavedAndMappedDataAreIdentical) {
  auto d = make_data(some_lengths());
  auto file = std::filesystem::temp_directory_path() / "ft_data_test_mapped.tok";
  d.save(file);
  auto m = TokenizedData::map(file);
  EXPECT_TRUE(m.is_mapped());
  ASSERT_EQ(m.size(), d.size());
  for (size_t k = 0; k < d.size(); ++k) {
    EXPECT_TRUE(std::ranges::equal(m.ids(k), d.ids(k)));
    EXPECT_TRUE(std::ranges::equal(m.mask(k), d.mask(k)));
    EXPECT_EQ(m.line(k), d.line(k));
  }
  std::filesystem::resize_file(file, 30);
  EXPECT_THROW(TokenizedData::map(file), ft::Error);
  std::filesystem::remove(file);
}
