// The hostfile of `ft launch --hostfile` (docs/distributed.md), the format of MLX's own
// launcher: a JSON list of hosts, one rank each, in rank order:
//
//   [{"ssh": "gpu-a", "ips": ["10.0.0.1"]}, {"ssh": "gpu-b", "ips": ["10.0.0.2", ...]}]
//
// "ssh" is the name ssh reaches the host by; the first of "ips" is the address the other
// ranks reach it at (the rest are not used). A host of this machine (ssh "", "localhost",
// "127.0.0.1" or "::1") may leave "ips" out and is reached at 127.0.0.1.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace ft::io {

// One rank's host: where it runs (ssh name; empty: this machine) and the address the
// other ranks reach it at.
struct Host {
  std::string ssh;
  std::string ip = "127.0.0.1";
};

// Whether an ssh name is this machine: "", "localhost", "127.0.0.1" or "::1".
bool is_local_host(const std::string& ssh);

// The hosts of a hostfile's text, in rank order. Throws ft::Error("launch", ...) naming
// `name` (the file) for text that is not JSON or not a non-empty list, and naming the host
// for one that lacks "ssh", whose "ips" is not a list of addresses, or that is another
// machine and lacks "ips"; and for an ssh name that begins with '-' (ssh would take it for
// an option), a first address that is empty, or either holding a NUL byte.
std::vector<Host> parse_hostfile(std::string_view text, const std::string& name);

}  // namespace ft::io
