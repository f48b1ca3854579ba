// TokenizedData: the tokenized samples of one split, held in memory or memory-mapped
// from a cache file, read through spans either way.
#pragma once

#include <cstdint>
#include <filesystem>
#include <iosfwd>
#include <memory>
#include <span>
#include <vector>

#include "ft/data/tokenize_sample.h"

namespace ft::data {

class TokenizedData {
 public:
  TokenizedData();
  TokenizedData(TokenizedData&&) noexcept;
  TokenizedData& operator=(TokenizedData&&) noexcept;
  ~TokenizedData();

  // Appends a sample of the record on 1-based `line` of its file (in-memory data only).
  void add(const Sample& sample, int64_t line);

  size_t size() const { return count_; }
  std::span<const int32_t> ids(size_t i) const;
  std::span<const uint8_t> mask(size_t i) const;
  int64_t length(size_t i) const { return int64_t(offsets_[i + 1] - offsets_[i]); }
  int64_t line(size_t i) const { return lines_[i]; }
  int64_t total_tokens() const { return count_ ? int64_t(offsets_[count_]) : 0; }

  // Writes the samples to one file (written beside it and renamed, so a reader never
  // sees half a file).
  void save(const std::filesystem::path& file) const;
  // Maps a file written by save; throws ft::Error for a missing or malformed file.
  static TokenizedData map(const std::filesystem::path& file);
  bool is_mapped() const { return mapping_ != nullptr; }

 private:
  struct Mapping;
  void point_at_vectors();

  // Owned storage (in-memory data); empty when mapped.
  std::vector<uint64_t> own_offsets_{0};  // (n + 1,) start of each sample in ids/mask
  std::vector<int64_t> own_lines_;        // (n,)
  std::vector<int32_t> own_ids_;          // (total,)
  std::vector<uint8_t> own_mask_;         // (total,)
  std::unique_ptr<Mapping> mapping_;

  size_t count_ = 0;
  const uint64_t* offsets_ = nullptr;
  const int64_t* lines_ = nullptr;
  const int32_t* ids_ = nullptr;
  const uint8_t* mask_ = nullptr;
};

// Writes samples to a file TokenizedData::map reads, as they come: the tokens go to
// side files and only offsets and line numbers (16 bytes a sample) stay in memory, so a
// dataset larger than memory can be tokenized. finish() assembles and renames the file;
// a writer destroyed before finish() leaves nothing behind.
class TokenizedWriter {
 public:
  explicit TokenizedWriter(const std::filesystem::path& file);
  ~TokenizedWriter();
  TokenizedWriter(const TokenizedWriter&) = delete;
  TokenizedWriter& operator=(const TokenizedWriter&) = delete;

  void add(const Sample& sample, int64_t line);
  size_t size() const { return lines_.size(); }
  void finish();

 private:
  std::filesystem::path file_, ids_path_, mask_path_;
  std::unique_ptr<std::ofstream> ids_, mask_;
  std::vector<uint64_t> offsets_{0};  // (n + 1,)
  std::vector<int64_t> lines_;        // (n,)
  bool finished_ = false;
};

}  // namespace ft::data
