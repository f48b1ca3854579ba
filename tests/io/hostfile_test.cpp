// The hostfile of ft launch (MLX's launcher's format): the hosts it reads as, and the one-line
// errors for what the launcher could not use, each naming the file and the host.
#include <gtest/gtest.h>

#include <string>

#include "ft/io/hostfile.h"
#include "io_test_util.h"

using ft::io::parse_hostfile;
using ft::testing::error_of;

namespace {

std::string parse_error(const std::string& text) {
  return error_of([&] { parse_hostfile(text, "hosts.json"); });
}

}  // namespace

TEST(Hostfile, HostsInRankOrderWithTheirFirstAddress) {
  const auto hosts = parse_hostfile(
      R"([{"ssh": "gpu-a", "ips": ["10.0.0.1", "192.168.0.1"]}, {"ssh": "localhost"},
          {"ssh": "user@gpu-b", "ips": ["fe80::2"]}])",
      "hosts.json");
  ASSERT_EQ(hosts.size(), 3u);
  EXPECT_EQ(hosts[0].ssh, "gpu-a");
  EXPECT_EQ(hosts[0].ip, "10.0.0.1");
  EXPECT_EQ(hosts[1].ssh, "localhost");
  EXPECT_EQ(hosts[1].ip, "127.0.0.1");  // this machine, without "ips"
  EXPECT_EQ(hosts[2].ssh, "user@gpu-b");
  EXPECT_EQ(hosts[2].ip, "fe80::2");
}

TEST(Hostfile, ThisMachineByAnyOfItsNames) {
  for (const char* name : {"", "localhost", "127.0.0.1", "::1"})
    EXPECT_TRUE(ft::io::is_local_host(name)) << name;
  EXPECT_FALSE(ft::io::is_local_host("gpu-a"));
}

TEST(Hostfile, BadShapesAreClearErrors) {
  EXPECT_EQ(parse_error(R"([{"ssh": )"), "[launch] hosts.json: not JSON");
  const std::string list =
      "[launch] hosts.json: a hostfile is a list of hosts, [{\"ssh\": \"host\", \"ips\": "
      "[\"10.0.0.1\"]}, ...]";
  EXPECT_EQ(parse_error("[]"), list);
  EXPECT_EQ(parse_error(R"({"ssh": "gpu-a", "ips": ["10.0.0.1"]})"), list);
  EXPECT_EQ(parse_error(R"([{"ssh": "localhost"}, {"ips": ["10.0.0.1"]}])"),
            "[launch] hosts.json: host 1 needs \"ssh\", the name ssh reaches it by");
  EXPECT_EQ(parse_error(R"([{"ssh": "gpu-a", "ips": "10.0.0.1"}])"),
            "[launch] hosts.json: host 0: \"ips\" must be a list of addresses");
  EXPECT_EQ(parse_error(R"([{"ssh": "gpu-a", "ips": []}])"),
            "[launch] hosts.json: host 0: \"ips\" must be a list of addresses");
  EXPECT_EQ(parse_error(R"([{"ssh": "gpu-a"}])"),
            "[launch] hosts.json: host 0 (gpu-a) needs \"ips\", the address the other hosts "
            "reach it at");
}

// Found by fuzz/hostfile.cpp (inputs in fuzz/regressions/hostfile/; the address's NUL byte
// was fixed with the name's): names and addresses the launcher would pass on to ssh, the
// ring or NCCL although they cannot work.
TEST(Hostfile, NamesAndAddressesTheLauncherCannotPassOnAreRefused) {
  EXPECT_EQ(parse_error(R"([{"ssh": "-oProxyCommand=sh", "ips": ["10.0.0.1"]}])"),
            "[launch] hosts.json: host 0: \"ssh\" is \"-oProxyCommand=sh\", which ssh would take "
            "for one of its options");
  EXPECT_EQ(parse_error(R"([{"ssh": "a\u0000", "ips": ["10.0.0.1"]}])"),
            "[launch] hosts.json: host 0: \"ssh\" holds a NUL byte");
  EXPECT_EQ(parse_error(R"([{"ssh": "localhost"}, {"ssh": "gpu-b", "ips": [""]}])"),
            "[launch] hosts.json: host 1: the first of \"ips\" is empty");
  EXPECT_EQ(parse_error(R"([{"ssh": "", "ips": ["10.0.0.1\u0000"]}])"),
            "[launch] hosts.json: host 0: the first of \"ips\" holds a NUL byte");
}
