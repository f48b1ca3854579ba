// A data file's bytes through RecordReader (Note [Record files]): JSONL or one JSON array,
// plain or gzip, cut into records, each parsed as a record.
#include "ft/data/record_reader.h"
#include "ft/data/records.h"
#include "fuzz/fuzz_target.h"

FT_FUZZ_TARGET(data_file) {
  const auto path = ft::fuzz::write_temp(ft::fuzz::bytes(data, size), "data.json");
  return ft::fuzz::refusing([&] {
    ft::data::RecordReader reader(path);
    std::string text;
    int64_t line = 0;
    while (reader.next_record(text, line))
      ft::fuzz::refusing(
          [&] { ft::data::parse_record(text, "fuzz.json:" + std::to_string(line)); });
  });
}
