#include "ft/data/packing.h"

#include <algorithm>

#include "ft/core/error.h"

namespace ft::data {

// First fit in O(n log n): a max-tree over the room left in each row finds the first row
// with enough room by walking down from the root. There are at most n rows.
std::vector<std::vector<int64_t>> pack_rows(const std::vector<int64_t>& lengths, int64_t capacity) {
  size_t leaves = 1;
  while (leaves < std::max<size_t>(lengths.size(), 1)) leaves *= 2;
  // Unopened rows have full room, so the first with room is also the next to open.
  std::vector<int64_t> room(2 * leaves, capacity);
  std::vector<std::vector<int64_t>> rows;
  for (size_t i = 0; i < lengths.size(); ++i) {
    FT_CHECK(lengths[i] <= capacity, "data", "a sample of ", lengths[i],
             " positions does not fit a packed row of ", capacity);
    size_t node = 1;
    while (node < leaves) node = room[2 * node] >= lengths[i] ? 2 * node : 2 * node + 1;
    size_t r = node - leaves;
    if (r == rows.size()) rows.emplace_back();
    FT_ASSERT(r < rows.size());
    rows[r].push_back(int64_t(i));
    room[node] -= lengths[i];
    for (node /= 2; node >= 1; node /= 2) room[node] = std::max(room[2 * node], room[2 * node + 1]);
  }
  return rows;
}

}  // namespace ft::data
