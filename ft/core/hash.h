// FNV-1a, 64 bits: a hash of text that is the same on every platform and run, unlike
// std::hash (settings hashes in checkpoints, settings compared across ranks).
#pragma once

#include <cstdint>
#include <string_view>

namespace ft {

inline uint64_t fnv1a(std::string_view text) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : text) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

}  // namespace ft
