#include "ft/data/packing.h"

#include "ft/core/error.h"

namespace ft::data {

std::vector<std::vector<int64_t>> pack_rows(const std::vector<int64_t>& lengths, int64_t capacity) {
  std::vector<std::vector<int64_t>> rows;
  std::vector<int64_t> room;
  for (size_t i = 0; i < lengths.size(); ++i) {
    FT_CHECK(lengths[i] <= capacity, "data", "a sample of ", lengths[i],
             " positions does not fit a packed row of ", capacity);
    size_t r = 0;
    while (r < rows.size() && room[r] < lengths[i]) ++r;
    if (r == rows.size()) {
      rows.emplace_back();
      room.push_back(capacity);
    }
    rows[r].push_back(int64_t(i));
    room[r] -= lengths[i];
  }
  return rows;
}

}  // namespace ft::data
