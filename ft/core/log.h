// Logging to stderr with levels; FT_LOG_LEVEL=debug|info|warn|error sets the threshold.
#pragma once

#include <string>

#include "ft/core/error.h"

namespace ft::log {

enum class Level { debug = 0, info = 1, warn = 2, error = 3 };

void set_level(Level level);
Level level();
// Parses "debug", "info", "warn" or "error"; throws ft::Error otherwise.
Level parse_level(const std::string& name);
void write(Level level, const std::string& message);

template <typename... Args>
void debug(const Args&... args) {
  if (level() <= Level::debug) write(Level::debug, detail::concat(args...));
}
template <typename... Args>
void info(const Args&... args) {
  if (level() <= Level::info) write(Level::info, detail::concat(args...));
}
template <typename... Args>
void warn(const Args&... args) {
  if (level() <= Level::warn) write(Level::warn, detail::concat(args...));
}
template <typename... Args>
void error(const Args&... args) {
  write(Level::error, detail::concat(args...));
}

}  // namespace ft::log
