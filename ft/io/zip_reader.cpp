#include "ft/io/zip_reader.h"

#include <zlib.h>  // defines: inflate, for deflated entries

#include <algorithm>

#include "ft/core/error.h"

namespace ft::io {

namespace fs = std::filesystem;

namespace {

constexpr const char* kPlace = "zip";
constexpr uint32_t kEndOfCentralDir = 0x06054b50;
constexpr uint32_t kZip64EndOfCentralDir = 0x06064b50;
constexpr uint32_t kZip64Locator = 0x07064b50;
constexpr uint32_t kCentralHeader = 0x02014b50;
constexpr uint32_t kLocalHeader = 0x04034b50;

uint64_t le(const std::string& s, size_t pos, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(s[pos + i]);
  return v;
}

}  // namespace

ZipReader::ZipReader(const fs::path& file) : path_(file) {
  std::error_code ec;
  FT_CHECK(fs::is_regular_file(file, ec), kPlace, file.string(), ": no such file");
  file_size_ = fs::file_size(file, ec);
  in_.open(file, std::ios::binary);
  FT_CHECK(in_, kPlace, file.string(), ": cannot open");
  auto read_at = [&](uint64_t offset, uint64_t n) {
    // Written so that no sum can wrap: the offsets and sizes come from the file.
    FT_CHECK(n <= file_size_ && offset <= file_size_ - n, kPlace, file.string(),
             ": truncated zip (needs bytes ", offset, "..", offset, "+", n, ", file has ",
             file_size_, ")");
    std::string buf(n, '\0');
    in_.seekg(static_cast<std::streamoff>(offset));
    in_.read(buf.data(), static_cast<std::streamsize>(n));
    FT_CHECK(in_, kPlace, file.string(), ": cannot read");
    return buf;
  };

  // The end-of-central-directory record sits in the last 22 + 65535 (comment) bytes.
  const uint64_t tail_len = std::min<uint64_t>(file_size_, 22 + 65535);
  const std::string tail = read_at(file_size_ - tail_len, tail_len);
  size_t eocd = std::string::npos;
  for (size_t i = tail.size() >= 22 ? tail.size() - 22 + 1 : 0; i-- > 0;) {
    if (le(tail, i, 4) == kEndOfCentralDir) {
      eocd = i;
      break;
    }
  }
  FT_CHECK(eocd != std::string::npos, kPlace, file.string(),
           ": not a zip archive (no end-of-central-directory record; truncated?)");
  uint64_t count = le(tail, eocd + 10, 2);
  uint64_t dir_size = le(tail, eocd + 12, 4);
  uint64_t dir_offset = le(tail, eocd + 16, 4);
  const uint64_t eocd_abs = file_size_ - tail_len + eocd;
  if ((count == 0xFFFF || dir_size == 0xFFFFFFFF || dir_offset == 0xFFFFFFFF) && eocd_abs >= 20) {
    const std::string loc = read_at(eocd_abs - 20, 20);
    FT_CHECK(le(loc, 0, 4) == kZip64Locator, kPlace, file.string(), ": zip64 locator missing");
    const std::string rec = read_at(le(loc, 8, 8), 56);
    FT_CHECK(le(rec, 0, 4) == kZip64EndOfCentralDir, kPlace, file.string(),
             ": zip64 end record missing");
    count = le(rec, 32, 8);
    dir_size = le(rec, 40, 8);
    dir_offset = le(rec, 48, 8);
  }
  const std::string dir = read_at(dir_offset, dir_size);
  size_t pos = 0;
  for (uint64_t i = 0; i < count; ++i) {
    FT_CHECK(pos + 46 <= dir.size() && le(dir, pos, 4) == kCentralHeader, kPlace, file.string(),
             ": corrupt central directory at entry ", i);
    Entry e;
    const uint16_t flags = static_cast<uint16_t>(le(dir, pos + 8, 2));
    e.method = static_cast<uint16_t>(le(dir, pos + 10, 2));
    e.compressed_size = le(dir, pos + 20, 4);
    e.size = le(dir, pos + 24, 4);
    const size_t name_len = le(dir, pos + 28, 2), extra_len = le(dir, pos + 30, 2),
                 comment_len = le(dir, pos + 32, 2);
    e.local_header_offset = le(dir, pos + 42, 4);
    FT_CHECK(pos + 46 + name_len + extra_len + comment_len <= dir.size(), kPlace, file.string(),
             ": corrupt central directory at entry ", i);
    e.name = dir.substr(pos + 46, name_len);
    FT_CHECK(!(flags & 1), kPlace, file.string(), ": entry '", e.name, "' is encrypted");
    // Zip64 extra field: the 8-byte values replace, in order, those stored as 0xFFFFFFFF.
    size_t x = pos + 46 + name_len;
    const size_t x_end = x + extra_len;
    while (x + 4 <= x_end) {
      const uint64_t id = le(dir, x, 2), len = le(dir, x + 2, 2);
      if (id == 0x0001) {
        size_t v = x + 4;
        if (e.size == 0xFFFFFFFF && v + 8 <= x_end) e.size = le(dir, v, 8), v += 8;
        if (e.compressed_size == 0xFFFFFFFF && v + 8 <= x_end)
          e.compressed_size = le(dir, v, 8), v += 8;
        if (e.local_header_offset == 0xFFFFFFFF && v + 8 <= x_end)
          e.local_header_offset = le(dir, v, 8);
      }
      x += 4 + len;
    }
    entries_.push_back(std::move(e));
    pos += 46 + name_len + extra_len + comment_len;
  }
}

const ZipReader::Entry* ZipReader::find(const std::string& name) const {
  for (const auto& e : entries_)
    if (e.name == name) return &e;
  return nullptr;
}

std::string ZipReader::read(const std::string& name) {
  const Entry* e = find(name);
  FT_CHECK(e != nullptr, kPlace, path_.string(), ": no entry '", name, "'");
  return read(*e);
}

std::string ZipReader::read(const Entry& e) {
  const std::string where = path_.string() + ": entry '" + e.name + "'";
  FT_CHECK(file_size_ >= 30 && e.local_header_offset <= file_size_ - 30, kPlace, where,
           ": header past the end of the file");
  std::string local(30, '\0');
  in_.seekg(static_cast<std::streamoff>(e.local_header_offset));
  in_.read(local.data(), 30);
  FT_CHECK(in_ && le(local, 0, 4) == kLocalHeader, kPlace, where, ": corrupt local header");
  const uint64_t data_start = e.local_header_offset + 30 + le(local, 26, 2) + le(local, 28, 2);
  FT_CHECK(data_start <= file_size_ && e.compressed_size <= file_size_ - data_start, kPlace, where,
           ": data of ", e.compressed_size, " bytes from byte ", data_start,
           " runs past the end of the file's ", file_size_, " (truncated?)");
  std::string raw(e.compressed_size, '\0');
  in_.seekg(static_cast<std::streamoff>(data_start));
  in_.read(raw.data(), static_cast<std::streamsize>(raw.size()));
  FT_CHECK(in_, kPlace, where, ": cannot read");
  if (e.method == 0) {
    FT_CHECK(e.size == e.compressed_size, kPlace, where, ": stored entry with mismatched sizes");
    return raw;
  }
  FT_CHECK(e.method == 8, kPlace, where, ": compression method ", e.method,
           " is not supported (only stored and deflate)");
  // Deflate expands at most 1032 to 1; a larger claimed size is corrupt, and is refused
  // before it is allocated.
  FT_CHECK(e.size / 1032 <= e.compressed_size, kPlace, where, ": claims ", e.size, " bytes from ",
           e.compressed_size, " compressed, more than deflate can expand");
  std::string out(e.size, '\0');
  z_stream z{};
  FT_CHECK(inflateInit2(&z, -MAX_WBITS) == Z_OK, kPlace, where, ": zlib init failed");
  z.next_in = reinterpret_cast<Bytef*>(raw.data());
  z.avail_in = static_cast<uInt>(raw.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  const int rc = inflate(&z, Z_FINISH);
  const uint64_t produced = z.total_out;
  inflateEnd(&z);
  FT_CHECK(rc == Z_STREAM_END && produced == e.size, kPlace, where, ": corrupt deflate data");
  return out;
}

}  // namespace ft::io
