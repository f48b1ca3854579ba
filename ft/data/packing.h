// Sequence packing: which samples share a row.
#pragma once

#include <cstdint>
#include <vector>

namespace ft::data {

// Greedy first-fit in the given order: each length goes into the first row with room
// (rows hold at most `capacity` in total). Returns the indices into `lengths` of each
// row, in the order rows were opened. A length above capacity is an error (truncate
// samples to the row length first).
std::vector<std::vector<int64_t>> pack_rows(const std::vector<int64_t>& lengths, int64_t capacity);

}  // namespace ft::data
