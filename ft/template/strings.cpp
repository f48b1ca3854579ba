#include "ft/template/strings.h"

#include "ft/template/value.h"

namespace ft::jinja {

bool is_py_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f ||
         c == 0x205f || c == 0x3000;
}

std::string py_strip(const std::string& s, const std::string* chars, bool left, bool right) {
  std::u32string u = utf8_decode(s);
  std::u32string set = chars ? utf8_decode(*chars) : std::u32string();
  auto strip = [&](char32_t c) {
    return chars ? set.find(c) != std::u32string::npos : is_py_space(c);
  };
  size_t b = 0, e = u.size();
  if (left)
    while (b < e && strip(u[b])) ++b;
  if (right)
    while (e > b && strip(u[e - 1])) --e;
  return utf8_encode(u.substr(b, e - b));
}

std::vector<std::string> py_split(const std::string& s, const std::string* sep, long maxsplit) {
  std::vector<std::string> out;
  if (sep) {
    size_t pos = 0;
    while (maxsplit < 0 || static_cast<long>(out.size()) < maxsplit) {
      size_t hit = s.find(*sep, pos);
      if (hit == std::string::npos) break;
      out.push_back(s.substr(pos, hit - pos));
      pos = hit + sep->size();
    }
    out.push_back(s.substr(pos));
    return out;
  }
  std::u32string u = utf8_decode(s);
  size_t i = 0;
  while (true) {
    while (i < u.size() && is_py_space(u[i])) ++i;
    if (i == u.size()) break;
    if (maxsplit >= 0 && static_cast<long>(out.size()) == maxsplit) {
      size_t e = u.size();
      while (e > i && is_py_space(u[e - 1])) --e;
      out.push_back(utf8_encode(u.substr(i, e - i)));
      break;
    }
    size_t j = i;
    while (j < u.size() && !is_py_space(u[j])) ++j;
    out.push_back(utf8_encode(u.substr(i, j - i)));
    i = j;
  }
  return out;
}

std::vector<std::string> py_splitlines(const std::string& s) {
  std::u32string u = utf8_decode(s);
  std::vector<std::string> out;
  size_t start = 0;
  for (size_t i = 0; i < u.size(); ++i) {
    char32_t c = u[i];
    bool brk = c == '\n' || c == '\r' || c == 0x0b || c == 0x0c || (c >= 0x1c && c <= 0x1e) ||
               c == 0x85 || c == 0x2028 || c == 0x2029;
    if (!brk) continue;
    out.push_back(utf8_encode(u.substr(start, i - start)));
    if (c == '\r' && i + 1 < u.size() && u[i + 1] == '\n') ++i;
    start = i + 1;
  }
  if (start < u.size()) out.push_back(utf8_encode(u.substr(start)));
  return out;
}

std::string py_replace(const std::string& s, const std::string& from, const std::string& to,
                       long count) {
  std::string out;
  size_t pos = 0;
  long done = 0;
  if (from.empty()) {  // Python inserts `to` around every character
    std::u32string u = utf8_decode(s);
    for (char32_t c : u) {
      if (count >= 0 && done >= count) {
        out += utf8_encode(c);
        continue;
      }
      out += to + utf8_encode(c);
      ++done;
    }
    if (count < 0 || done < count) out += to;
    return out;
  }
  while (count < 0 || done < count) {
    size_t hit = s.find(from, pos);
    if (hit == std::string::npos) break;
    out += s.substr(pos, hit - pos) + to;
    pos = hit + from.size();
    ++done;
  }
  return out + s.substr(pos);
}

// Case mapping covers ASCII and Latin-1/Latin Extended-A/Greek/Cyrillic pairs
// at fixed offsets; other scripts have no case or pass unchanged.
namespace {
char32_t to_upper(char32_t c) {
  if (c >= 'a' && c <= 'z') return c - 32;
  if ((c >= 0xe0 && c <= 0xfe && c != 0xf7)) return c - 32;
  if (c >= 0x3b1 && c <= 0x3c9 && c != 0x3c2) return c - 32;
  if (c >= 0x430 && c <= 0x44f) return c - 32;
  if (c >= 0x450 && c <= 0x45f) return c - 80;
  if (c >= 0x100 && c <= 0x17f && (c & 1) && c != 0x131 && c != 0x149 && c != 0x17f) return c - 1;
  return c;
}
char32_t to_lower(char32_t c) {
  if (c >= 'A' && c <= 'Z') return c + 32;
  if ((c >= 0xc0 && c <= 0xde && c != 0xd7)) return c + 32;
  if (c >= 0x391 && c <= 0x3a9 && c != 0x3a2) return c + 32;
  if (c >= 0x410 && c <= 0x42f) return c + 32;
  if (c >= 0x400 && c <= 0x40f) return c + 80;
  if (c >= 0x100 && c <= 0x17f && !(c & 1) && c != 0x130 && c != 0x138) return c + 1;
  return c;
}
bool is_cased(char32_t c) {
  return to_upper(c) != c || to_lower(c) != c;
}
}  // namespace

std::string py_upper(const std::string& s) {
  std::u32string u = utf8_decode(s);
  for (char32_t& c : u) c = to_upper(c);
  return utf8_encode(u);
}

std::string py_lower(const std::string& s) {
  std::u32string u = utf8_decode(s);
  for (char32_t& c : u) c = to_lower(c);
  return utf8_encode(u);
}

std::string py_capitalize(const std::string& s) {
  std::u32string u = utf8_decode(s);
  for (size_t i = 0; i < u.size(); ++i) u[i] = i == 0 ? to_upper(u[i]) : to_lower(u[i]);
  return utf8_encode(u);
}

std::string py_title(const std::string& s) {
  std::u32string u = utf8_decode(s);
  bool prev_cased = false;
  for (char32_t& c : u) {
    c = prev_cased ? to_lower(c) : to_upper(c);
    prev_cased = is_cased(c);
  }
  return utf8_encode(u);
}

size_t py_length(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

}  // namespace ft::jinja
