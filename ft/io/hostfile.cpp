#include "ft/io/hostfile.h"

#include <nlohmann/json.hpp>

#include "ft/core/error.h"

namespace ft::io {

namespace {
constexpr const char* kPlace = "launch";
}  // namespace

bool is_local_host(const std::string& ssh) {
  return ssh.empty() || ssh == "localhost" || ssh == "127.0.0.1" || ssh == "::1";
}

std::vector<Host> parse_hostfile(std::string_view text, const std::string& name) {
  using nlohmann::json;
  const json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  FT_CHECK(!j.is_discarded(), kPlace, name, ": not JSON");
  FT_CHECK(j.is_array() && !j.empty(), kPlace, name,
           ": a hostfile is a list of hosts, [{\"ssh\": \"host\", \"ips\": [\"10.0.0.1\"]}, ...]");
  std::vector<Host> hosts;
  for (size_t i = 0; i < j.size(); ++i) {
    const json& h = j[i];
    FT_CHECK(h.is_object() && h.contains("ssh") && h["ssh"].is_string(), kPlace, name, ": host ", i,
             " needs \"ssh\", the name ssh reaches it by");
    Host host;
    host.ssh = h["ssh"];
    // The name and the address go on a command line or into an environment variable
    // (apps/ft/launch.cpp), which end at a NUL byte; the name comes after ssh's options.
    FT_CHECK(host.ssh.find('\0') == std::string::npos, kPlace, name, ": host ", i,
             ": \"ssh\" holds a NUL byte");
    FT_CHECK(!host.ssh.starts_with('-'), kPlace, name, ": host ", i, ": \"ssh\" is \"", host.ssh,
             "\", which ssh would take for one of its options");
    if (h.contains("ips")) {
      FT_CHECK(h["ips"].is_array() && !h["ips"].empty() && h["ips"][0].is_string(), kPlace, name,
               ": host ", i, ": \"ips\" must be a list of addresses");
      host.ip = h["ips"][0];
      FT_CHECK(!host.ip.empty(), kPlace, name, ": host ", i, ": the first of \"ips\" is empty");
      FT_CHECK(host.ip.find('\0') == std::string::npos, kPlace, name, ": host ", i,
               ": the first of \"ips\" holds a NUL byte");
    } else {
      FT_CHECK(is_local_host(host.ssh), kPlace, name, ": host ", i, " (", host.ssh,
               ") needs \"ips\", the address the other hosts reach it at");
    }
    hosts.push_back(host);
  }
  return hosts;
}

}  // namespace ft::io
