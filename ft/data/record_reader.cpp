#include "ft/data/record_reader.h"

#include <cctype>
#include <cstdio>
#include <fstream>
#include <vector>

#ifdef FT_HAVE_ZSTD
#include <zstd.h>
#endif

#include "ft/core/error.h"
#include "ft/data/records.h"  // defines: kMaxRecordBytes

namespace ft::data {

namespace fs = std::filesystem;

// Note [Record files]
// A data file holds records either one JSON object per line (JSONL) or as one JSON array
// of objects (as Alpaca-style and many exported datasets ship); either may be compressed
// with gzip (zlib reads plain files as they are too) or zstd (found by its magic number). The
// reader yields one record's text at a time with the line it starts on, so an array is never held
// whole: it tracks strings and nesting to find where each element ends. A record longer than
// kMaxRecordBytes is refused before it is held whole.
#ifdef FT_HAVE_ZSTD
struct RecordReader::Zstd {
  std::FILE* file = nullptr;
  ZSTD_DCtx* context = nullptr;
  std::vector<char> in = std::vector<char>(ZSTD_DStreamInSize());
  std::vector<char> out = std::vector<char>(ZSTD_DStreamOutSize());
  ZSTD_inBuffer input{nullptr, 0, 0};
  size_t out_size = 0, out_pos = 0;
  size_t last = 0;  // ZSTD_decompressStream's last hint: 0 at the end of a frame
  ~Zstd() {
    if (context) ZSTD_freeDCtx(context);
    if (file) std::fclose(file);
  }
};
#else
struct RecordReader::Zstd {};
#endif

RecordReader::RecordReader(const fs::path& file) : file_(file.string()) {
  unsigned char magic[4] = {};
  {
    std::ifstream probe(file, std::ios::binary);
    FT_CHECK(probe, "data", file_, ": cannot open");
    probe.read(reinterpret_cast<char*>(magic), 4);
  }
  if (magic[0] == 0x28 && magic[1] == 0xB5 && magic[2] == 0x2F && magic[3] == 0xFD) {
#ifdef FT_HAVE_ZSTD
    zstd_ = std::make_unique<Zstd>();
    zstd_->file = std::fopen(file.c_str(), "rb");
    zstd_->context = ZSTD_createDCtx();
    FT_CHECK(zstd_->file && zstd_->context, "data", file_, ": cannot open");
#else
    throw Error("data", file_ + ": a zstd file, and this ft was built without zstd");
#endif
  } else {
    in_.reset(gzopen(file.c_str(), "rb"));
    FT_CHECK(in_ != nullptr, "data", file_, ": cannot open");
    gzbuffer(in_.get(), 1 << 16);
  }
  // The first character that is not white space (after a UTF-8 byte-order mark) says which
  // form the file has.
  int c = next();
  if (c == 0xEF && peek() == 0xBB) {
    next();
    next();
    c = next();
  }
  while (c != -1 && std::isspace(c)) c = next();
  array_ = c == '[';
  if (c != -1 && !array_) pending_ = c;  // the first line's first character
}

RecordReader::~RecordReader() = default;

// One byte of the file's text, or -1 at its end.
int RecordReader::read_byte() {
  if (!zstd_) {
    const int c = gzgetc(in_.get());
    if (c == -1) {
      int error = Z_OK;
      const char* message = gzerror(in_.get(), &error);
      FT_CHECK(error == Z_OK || error == Z_STREAM_END, "data", file_,
               ": not a readable gzip file: ", message);
    }
    return c;
  }
#ifdef FT_HAVE_ZSTD
  Zstd& z = *zstd_;
  while (z.out_pos == z.out_size) {
    if (z.input.pos == z.input.size) {
      const size_t n = std::fread(z.in.data(), 1, z.in.size(), z.file);
      if (n == 0) {
        FT_CHECK(z.last == 0, "data", file_, ": the zstd stream is cut short");
        return -1;
      }
      z.input = {z.in.data(), n, 0};
    }
    ZSTD_outBuffer output{z.out.data(), z.out.size(), 0};
    z.last = ZSTD_decompressStream(z.context, &output, &z.input);
    FT_CHECK(!ZSTD_isError(z.last), "data", file_,
             ": not a readable zstd file: ", ZSTD_getErrorName(z.last));
    z.out_size = output.pos;
    z.out_pos = 0;
  }
  return static_cast<unsigned char>(z.out[z.out_pos++]);
#else
  return -1;
#endif
}

bool RecordReader::next_record(std::string& text, int64_t& line) {
  return array_ ? next_element(text, line) : next_line(text, line);
}

int RecordReader::next() {
  const int c = pending_ != kNone ? pending_ : read_byte();
  pending_ = kNone;
  if (c == '\n') ++line_;
  return c;
}

int RecordReader::peek() {
  if (pending_ == kNone) pending_ = read_byte();
  return pending_;
}

void RecordReader::append(std::string& text, int c, const std::string& where) const {
  FT_CHECK(text.size() < kMaxRecordBytes, "data", where, ": a record longer than ft reads (",
           kMaxRecordBytes, " bytes)");
  text.push_back(static_cast<char>(c));
}

bool RecordReader::next_line(std::string& text, int64_t& line) {
  while (true) {
    text.clear();
    line = line_;
    int c = next();
    if (c == -1) return false;
    const std::string where = file_ + ":" + std::to_string(line);
    for (; c != -1 && c != '\n'; c = next()) append(text, c, where);
    if (!text.empty() && text.back() == '\r') text.pop_back();
    if (text.find_first_not_of(" \t") != std::string::npos) return true;
    if (c == -1) return false;
  }
}

bool RecordReader::next_element(std::string& text, int64_t& line) {
  text.clear();
  if (done_) return false;
  int c = next();
  while (c != -1 && std::isspace(c)) c = next();
  if (c == ']' && first_) {  // []
    finish();
    return false;
  }
  FT_CHECK(c != -1, "data", file_, ":", line_, ": the JSON array is not closed");
  line = line_;
  const std::string where = file_ + ":" + std::to_string(line);
  int depth = 0;
  bool in_string = false, escaped = false;
  for (; c != -1; c = next()) {
    if (in_string) {
      if (escaped)
        escaped = false;
      else if (c == '\\')
        escaped = true;
      else if (c == '"')
        in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      ++depth;
    } else if (c == '}' || c == ']') {
      if (depth == 0) {
        FT_CHECK(c == ']', "data", where, ": a stray '}' in the JSON array");
        FT_CHECK(text.find_first_not_of(" \t\r\n") != std::string::npos, "data", where,
                 ": a comma before the JSON array's closing bracket");
        first_ = false;
        finish();
        return true;
      }
      --depth;
    } else if (c == ',' && depth == 0) {
      FT_CHECK(text.find_first_not_of(" \t\r\n") != std::string::npos, "data", where,
               ": an empty element in the JSON array");
      first_ = false;
      return true;
    }
    append(text, c, where);
  }
  throw Error("data", file_ + ":" + std::to_string(line_) + ": the JSON array is not closed");
}

// The array's closing bracket was read: nothing but white space may follow.
void RecordReader::finish() {
  done_ = true;
  for (int c = next(); c != -1; c = next())
    FT_CHECK(std::isspace(c), "data", file_, ":", line_,
             ": text after the JSON array's closing bracket");
}

}  // namespace ft::data
