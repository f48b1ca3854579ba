// ft::Error: the one exception type the library throws for a user's error.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace ft {

// An error a user can cause and fix: bad input, a missing file, a wrong shape.
// what() reads "[place] fact", e.g. "[optimizer] unknown optimizer 'adamx'".
class Error : public std::runtime_error {
 public:
  Error(const std::string& place, const std::string& fact)
      : std::runtime_error("[" + place + "] " + fact), place_(place), fact_(fact) {}
  const std::string& place() const { return place_; }
  const std::string& fact() const { return fact_; }

 private:
  std::string place_;
  std::string fact_;
};

// A broken invariant inside ft: a bug, never the user's input.
class InternalError : public std::logic_error {
 public:
  using std::logic_error::logic_error;
};

namespace detail {
template <typename... Args>
std::string concat(const Args&... args) {
  std::ostringstream out;
  (out << ... << args);
  return out.str();
}
}  // namespace detail

// Throws ft::Error("place", "the pieces joined") unless cond holds.
#define FT_CHECK(cond, place, ...)                                            \
  do {                                                                        \
    if (!(cond)) throw ::ft::Error(place, ::ft::detail::concat(__VA_ARGS__)); \
  } while (0)

// Internal invariant: throws ft::InternalError naming file and line; never aborts.
#define FT_ASSERT(cond)                                                                           \
  do {                                                                                            \
    if (!(cond))                                                                                  \
      throw ::ft::InternalError(                                                                  \
          ::ft::detail::concat(__FILE__, ":", __LINE__, ": internal invariant failed: ", #cond)); \
  } while (0)

}  // namespace ft
