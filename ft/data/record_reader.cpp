#include "ft/data/record_reader.h"

#include <cctype>

#include "ft/core/error.h"
#include "ft/data/records.h"  // defines: kMaxRecordBytes

namespace ft::data {

namespace fs = std::filesystem;

// Note [Record files]
// A data file holds records either one JSON object per line (JSONL) or as one JSON array
// of objects (as Alpaca-style and many exported datasets ship); either may be compressed
// with gzip (zlib reads plain files as they are too). The reader yields one record's text
// at a time with the line it starts on, so an array is never held whole: it tracks strings
// and nesting to find where each element ends. A record longer than kMaxRecordBytes is
// refused before it is held whole.
RecordReader::RecordReader(const fs::path& file) : file_(file.string()) {
  in_ = gzopen(file.c_str(), "rb");
  FT_CHECK(in_ != nullptr, "data", file_, ": cannot open");
  gzbuffer(in_, 1 << 16);
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

RecordReader::~RecordReader() {
  gzclose(in_);
}

bool RecordReader::next_record(std::string& text, int64_t& line) {
  return array_ ? next_element(text, line) : next_line(text, line);
}

int RecordReader::next() {
  const int c = pending_ != kNone ? pending_ : gzgetc(in_);
  pending_ = kNone;
  if (c == '\n') ++line_;
  return c;
}

int RecordReader::peek() {
  if (pending_ == kNone) pending_ = gzgetc(in_);
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
