// Python str semantics the templates rely on, over UTF-8 strings.
#pragma once

#include <string>
#include <vector>

namespace ft::jinja {

bool is_py_space(char32_t c);
// str.strip / lstrip / rstrip; chars == nullptr strips whitespace.
std::string py_strip(const std::string& s, const std::string* chars, bool left, bool right);
// str.split(sep, maxsplit); sep == nullptr splits on whitespace runs.
std::vector<std::string> py_split(const std::string& s, const std::string* sep, long maxsplit);
std::vector<std::string> py_splitlines(const std::string& s);
std::string py_replace(const std::string& s, const std::string& from, const std::string& to,
                       long count);
std::string py_upper(const std::string& s);
std::string py_lower(const std::string& s);
std::string py_capitalize(const std::string& s);
std::string py_title(const std::string& s);  // str.title()
size_t py_length(const std::string& s);      // code points

}  // namespace ft::jinja
