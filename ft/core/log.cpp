#include "ft/core/log.h"

#include <atomic>
#include <cstdlib>
#include <iostream>
#include <mutex>

namespace ft::log {
namespace {

Level initial_level() {
  const char* env = std::getenv("FT_LOG_LEVEL");
  if (!env) return Level::info;
  try {
    return parse_level(env);
  } catch (const Error&) {
    return Level::info;
  }
}

std::atomic<Level>& current() {
  static std::atomic<Level> level{initial_level()};
  return level;
}

}  // namespace

void set_level(Level level) {
  current() = level;
}
Level level() {
  return current();
}

Level parse_level(const std::string& name) {
  if (name == "debug") return Level::debug;
  if (name == "info") return Level::info;
  if (name == "warn" || name == "warning") return Level::warn;
  if (name == "error") return Level::error;
  throw Error("log", "unknown log level '" + name + "' (debug, info, warn, error)");
}

void write(Level level, const std::string& message) {
  static std::mutex mutex;
  static const char* names[] = {"debug", "info", "warn", "error"};
  std::lock_guard<std::mutex> lock(mutex);
  std::cerr << "ft: " << names[static_cast<int>(level)] << ": " << message << "\n";
}

}  // namespace ft::log
