// The hostfile of `ft launch --hostfile` through io::parse_hostfile, and what the launcher
// then relies on of each host it returns: an ssh name that ssh cannot read as one of its
// options, and an address the ring and NCCL can be given; both go into a command line or
// an environment variable, where a NUL byte would cut them short.
#include "ft/io/hostfile.h"
#include "fuzz/fuzz_target.h"

FT_FUZZ_TARGET(hostfile) {
  return ft::fuzz::refusing([&] {
    const auto hosts = ft::io::parse_hostfile(ft::fuzz::bytes(data, size), "hosts.json");
    FT_ASSERT(!hosts.empty());
    for (const ft::io::Host& host : hosts) {
      FT_ASSERT(!host.ssh.starts_with('-'));
      FT_ASSERT(host.ssh.find('\0') == std::string::npos);
      FT_ASSERT(!host.ip.empty());
      FT_ASSERT(host.ip.find('\0') == std::string::npos);
    }
  });
}
