// Reading entries of a zip archive (PyTorch checkpoints, .npz files).
//
// Only what those writers produce: stored or deflated entries, zip64 sizes and offsets,
// no encryption and no multi-disk archives. Entries are read on demand, so a large
// checkpoint is never held in memory whole.
#pragma once

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace ft::io {

class ZipReader {
 public:
  struct Entry {
    std::string name;
    uint16_t method = 0;  // 0 stored, 8 deflated
    uint64_t compressed_size = 0;
    uint64_t size = 0;
    uint64_t local_header_offset = 0;
  };

  // Reads the central directory; throws ft::Error naming the file when it is not a zip.
  explicit ZipReader(const std::filesystem::path& file);

  const std::vector<Entry>& entries() const { return entries_; }
  const Entry* find(const std::string& name) const;
  // The entry's uncompressed bytes; throws ft::Error naming the file and entry.
  std::string read(const Entry& entry);
  std::string read(const std::string& name);
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
  std::ifstream in_;
  uint64_t file_size_ = 0;
  std::vector<Entry> entries_;
};

}  // namespace ft::io
