// The records of a data file, one at a time: JSON objects one per line (JSONL) or one JSON
// array of objects, either plain or compressed with gzip or zstd (Note [Record files] in
// record_reader.cpp).
//
//   ft::data::RecordReader reader("train.json");
//   std::string text;
//   int64_t line;
//   while (reader.next_record(text, line)) parse_record(text, ...);
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

#include <zlib.h>

namespace ft::data {

class RecordReader {
 public:
  // Throws ft::Error naming the file when it cannot be opened.
  explicit RecordReader(const std::filesystem::path& file);
  ~RecordReader();
  RecordReader(const RecordReader&) = delete;
  RecordReader& operator=(const RecordReader&) = delete;

  // The next record's text and the line it starts on; false at the end. Blank lines of a
  // JSONL file are passed over. Throws ft::Error naming the file and line for a record
  // longer than kMaxRecordBytes and for a broken array (not closed, a stray '}', an empty
  // element, a comma before the closing bracket, text after it). The text itself is not
  // parsed: parse_record does that.
  bool next_record(std::string& text, int64_t& line);

 private:
  static constexpr int kNone = -2;  // nothing peeked (-1 is the end of the file)
  struct Zstd;                      // a zstd stream's state, where the file is one
  int read_byte();
  int next();
  int peek();
  void append(std::string& text, int c, const std::string& where) const;
  bool next_line(std::string& text, int64_t& line);
  bool next_element(std::string& text, int64_t& line);
  void finish();

  std::string file_;
  struct GzClose {
    void operator()(gzFile f) const { gzclose(f); }
  };
  // Owned here, so that a constructor that throws after opening still closes it.
  std::unique_ptr<gzFile_s, GzClose> in_;
  std::unique_ptr<Zstd> zstd_;
  bool array_ = false, first_ = true, done_ = false;
  int pending_ = kNone;
  int64_t line_ = 1;
};

}  // namespace ft::data
