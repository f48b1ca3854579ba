#include "ft/data/tokenized.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <fstream>

#include "ft/core/error.h"

namespace ft::data {
namespace {

// File layout (native little-endian): magic, count, total, then offsets (count + 1 u64),
// lines (count i64), ids (total i32), mask (total u8). Every section starts aligned.
constexpr char kMagic[8] = {'F', 'T', 'D', 'A', 'T', 'A', '1', '\0'};
constexpr size_t kHeader = 24;

}  // namespace

struct TokenizedData::Mapping {
  void* addr = nullptr;
  size_t size = 0;
  ~Mapping() {
    if (addr) munmap(addr, size);
  }
};

TokenizedData::TokenizedData() {
  point_at_vectors();
}
TokenizedData::TokenizedData(TokenizedData&& o) noexcept {
  *this = std::move(o);
}
TokenizedData& TokenizedData::operator=(TokenizedData&& o) noexcept {
  own_offsets_ = std::move(o.own_offsets_);
  own_lines_ = std::move(o.own_lines_);
  own_ids_ = std::move(o.own_ids_);
  own_mask_ = std::move(o.own_mask_);
  mapping_ = std::move(o.mapping_);
  count_ = o.count_;
  offsets_ = o.offsets_;
  lines_ = o.lines_;
  ids_ = o.ids_;
  mask_ = o.mask_;
  if (!mapping_) point_at_vectors();
  o.own_offsets_ = {0};
  o.count_ = 0;
  o.point_at_vectors();
  return *this;
}
TokenizedData::~TokenizedData() = default;

void TokenizedData::point_at_vectors() {
  offsets_ = own_offsets_.data();
  lines_ = own_lines_.data();
  ids_ = own_ids_.data();
  mask_ = own_mask_.data();
}

void TokenizedData::add(const Sample& sample, int64_t line) {
  FT_ASSERT(!mapping_);
  FT_ASSERT(sample.ids.size() == sample.mask.size());
  own_ids_.insert(own_ids_.end(), sample.ids.begin(), sample.ids.end());
  own_mask_.insert(own_mask_.end(), sample.mask.begin(), sample.mask.end());
  own_offsets_.push_back(own_ids_.size());
  own_lines_.push_back(line);
  ++count_;
  point_at_vectors();
}

std::span<const int32_t> TokenizedData::ids(size_t i) const {
  FT_ASSERT(i < count_);
  return {ids_ + offsets_[i], size_t(offsets_[i + 1] - offsets_[i])};
}

std::span<const uint8_t> TokenizedData::mask(size_t i) const {
  FT_ASSERT(i < count_);
  return {mask_ + offsets_[i], size_t(offsets_[i + 1] - offsets_[i])};
}

void TokenizedData::save(const std::filesystem::path& file) const {
  std::filesystem::path tmp = file;
  tmp += ".tmp" + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::binary);
    FT_CHECK(out, "data", tmp.string(), ": cannot write");
    uint64_t count = count_, total = uint64_t(total_tokens());
    out.write(kMagic, 8);
    out.write(reinterpret_cast<const char*>(&count), 8);
    out.write(reinterpret_cast<const char*>(&total), 8);
    out.write(reinterpret_cast<const char*>(offsets_), std::streamsize(8 * (count + 1)));
    out.write(reinterpret_cast<const char*>(lines_), std::streamsize(8 * count));
    out.write(reinterpret_cast<const char*>(ids_), std::streamsize(4 * total));
    out.write(reinterpret_cast<const char*>(mask_), std::streamsize(total));
    FT_CHECK(out.good(), "data", tmp.string(), ": write failed");
  }
  std::filesystem::rename(tmp, file);
}

TokenizedData TokenizedData::map(const std::filesystem::path& file) {
  int fd = ::open(file.c_str(), O_RDONLY);
  FT_CHECK(fd >= 0, "data", file.string(), ": cannot open");
  struct stat st {};
  ::fstat(fd, &st);
  size_t size = size_t(st.st_size);
  if (size < kHeader) {
    ::close(fd);
    throw Error("data", file.string() + ": not a tokenized data file (too short)");
  }
  void* addr = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  FT_CHECK(addr != MAP_FAILED, "data", file.string(), ": cannot map");
  auto mapping = std::make_unique<Mapping>();
  mapping->addr = addr;
  mapping->size = size;
  const char* base = static_cast<const char*>(addr);
  uint64_t count = 0, total = 0;
  std::memcpy(&count, base + 8, 8);
  std::memcpy(&total, base + 16, 8);
  FT_CHECK(std::memcmp(base, kMagic, 8) == 0 &&
               size == kHeader + 8 * (count + 1) + 8 * count + 4 * total + total,
           "data", file.string(), ": not a tokenized data file of this version");
  TokenizedData d;
  d.mapping_ = std::move(mapping);
  d.count_ = count;
  d.offsets_ = reinterpret_cast<const uint64_t*>(base + kHeader);
  d.lines_ = reinterpret_cast<const int64_t*>(base + kHeader + 8 * (count + 1));
  d.ids_ = reinterpret_cast<const int32_t*>(base + kHeader + 8 * (2 * count + 1));
  d.mask_ = reinterpret_cast<const uint8_t*>(base + kHeader + 8 * (2 * count + 1) + 4 * total);
  FT_CHECK(d.offsets_[0] == 0 && d.offsets_[count] == total, "data", file.string(),
           ": corrupt offsets");
  return d;
}

TokenizedWriter::TokenizedWriter(const std::filesystem::path& file) : file_(file) {
  std::string suffix = ".part" + std::to_string(::getpid());
  ids_path_ = file;
  ids_path_ += suffix + ".ids";
  mask_path_ = file;
  mask_path_ += suffix + ".mask";
  ids_ = std::make_unique<std::ofstream>(ids_path_, std::ios::binary);
  mask_ = std::make_unique<std::ofstream>(mask_path_, std::ios::binary);
  FT_CHECK(*ids_ && *mask_, "data", file.string(), ": cannot write beside it");
}

TokenizedWriter::~TokenizedWriter() {
  ids_.reset();
  mask_.reset();
  std::error_code ec;
  std::filesystem::remove(ids_path_, ec);
  std::filesystem::remove(mask_path_, ec);
}

void TokenizedWriter::add(const Sample& sample, int64_t line) {
  FT_ASSERT(!finished_ && sample.ids.size() == sample.mask.size());
  ids_->write(reinterpret_cast<const char*>(sample.ids.data()),
              std::streamsize(4 * sample.ids.size()));
  mask_->write(reinterpret_cast<const char*>(sample.mask.data()),
               std::streamsize(sample.mask.size()));
  offsets_.push_back(offsets_.back() + sample.ids.size());
  lines_.push_back(line);
}

void TokenizedWriter::finish() {
  FT_ASSERT(!finished_);
  finished_ = true;
  ids_->close();
  mask_->close();
  FT_CHECK(ids_->good() && mask_->good(), "data", file_.string(), ": write failed");
  std::filesystem::path tmp = file_;
  tmp += ".tmp" + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::binary);
    FT_CHECK(out, "data", tmp.string(), ": cannot write");
    uint64_t count = lines_.size(), total = offsets_.back();
    out.write(kMagic, 8);
    out.write(reinterpret_cast<const char*>(&count), 8);
    out.write(reinterpret_cast<const char*>(&total), 8);
    out.write(reinterpret_cast<const char*>(offsets_.data()), std::streamsize(8 * (count + 1)));
    out.write(reinterpret_cast<const char*>(lines_.data()), std::streamsize(8 * count));
    for (const auto& part : {ids_path_, mask_path_}) {
      std::ifstream in(part, std::ios::binary);
      out << in.rdbuf();
    }
    FT_CHECK(out.good(), "data", tmp.string(), ": write failed");
  }
  std::filesystem::rename(tmp, file_);
}

}  // namespace ft::data
