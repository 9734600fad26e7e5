// The pure rules of the cgroup manager: they hold on any host, so the v2 formats are checked here
// even on this v1 machine.
#include "cgroup_format.h"

#include <gtest/gtest.h>

namespace fmt = plume::fwp::cgroup_format;

TEST(CgroupFormat, CpuMaxIsQuotaAndPeriod) {
  EXPECT_EQ(fmt::format_cpu_max(150), "150000 100000");
  EXPECT_EQ(fmt::format_cpu_max(25), "25000 100000");
  EXPECT_EQ(fmt::format_cpu_max(0), "max 100000");
  EXPECT_EQ(fmt::cfs_quota_us(150), 150000);
  EXPECT_EQ(fmt::cfs_quota_us(0), -1);
}

TEST(CgroupFormat, WeightMapsToSharesAndClamps) {
  EXPECT_EQ(fmt::cpu_weight_to_shares(100), 1024u);  // v2's default weight is v1's default shares
  EXPECT_EQ(fmt::cpu_weight_to_shares(200), 2048u);
  EXPECT_EQ(fmt::cpu_weight_to_shares(1), 10u);
  EXPECT_EQ(fmt::cpu_weight_to_shares(0), 2u);
  EXPECT_EQ(fmt::cpu_weight_to_shares(100000), 262144u);
  EXPECT_EQ(fmt::clamp_cpu_weight(0), 1u);
  EXPECT_EQ(fmt::clamp_cpu_weight(500), 500u);
  EXPECT_EQ(fmt::clamp_cpu_weight(20000), 10000u);
}

TEST(CgroupFormat, FlatKeyedAndSingleValues) {
  const std::string oom = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
  EXPECT_EQ(fmt::flat_keyed_value(oom, "oom_kill"), 3u);
  EXPECT_EQ(fmt::flat_keyed_value(oom, "under_oom"), 0u);
  EXPECT_FALSE(fmt::flat_keyed_value(oom, "oom").has_value());
  EXPECT_EQ(fmt::flat_keyed_value("usage_usec 1234\nuser_usec 1000\n", "usage_usec"), 1234u);
  EXPECT_EQ(fmt::flat_keyed_value("max 7\n", "max"), 7u);
  EXPECT_EQ(fmt::single_value("123456\n"), 123456u);
  EXPECT_FALSE(fmt::single_value("max\n").has_value());
  EXPECT_FALSE(fmt::single_value("").has_value());
}

TEST(CgroupFormat, ControllerLists) {
  EXPECT_TRUE(fmt::list_has("cpuset cpu io memory pids\n", "cpu"));
  EXPECT_TRUE(fmt::list_has("cpuset cpu io memory pids\n", "pids"));
  EXPECT_FALSE(fmt::list_has("cpuset io memory\n", "cpu"));
  EXPECT_FALSE(fmt::list_has("", "memory"));
}

TEST(CgroupFormat, ParsesV1MountsBeneathRoot) {
  const std::string mountinfo =
      "30 22 0:27 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
      "31 30 0:28 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct\n"
      "34 30 0:31 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
      "35 30 0:32 / /sys/fs/cgroup/my\\040pids rw,relatime - cgroup cgroup rw,pids\n"
      "36 30 0:33 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd\n"
      "37 30 0:34 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n"
      "38 22 0:35 / /elsewhere/memory rw,relatime - cgroup cgroup rw,memory\n"
      "39 22 0:35 / /sys/fs/cgroupx/pids rw,relatime - cgroup cgroup rw,pids\n";
  auto h = fmt::parse_v1_hierarchies(mountinfo, "/sys/fs/cgroup");
  ASSERT_EQ(h.size(), 4u);
  EXPECT_EQ(h[0], (std::pair<std::string, std::string>{"memory", "/sys/fs/cgroup/memory"}));
  EXPECT_EQ(h[1], (std::pair<std::string, std::string>{"pids", "/sys/fs/cgroup/my pids"}));
  EXPECT_EQ(h[2], (std::pair<std::string, std::string>{"cpu", "/sys/fs/cgroup/cpu,cpuacct"}));
  EXPECT_EQ(h[3], (std::pair<std::string, std::string>{"cpuacct", "/sys/fs/cgroup/cpu,cpuacct"}));
  EXPECT_TRUE(fmt::parse_v1_hierarchies(mountinfo, "/elsewhere").size() == 1);
  EXPECT_TRUE(fmt::parse_v1_hierarchies(mountinfo, "/nowhere").empty());
}

TEST(CgroupFormat, RelativePathsCannotEscape) {
  EXPECT_FALSE(fmt::check_relative("").has_value());
  EXPECT_FALSE(fmt::check_relative("tenant").has_value());
  EXPECT_FALSE(fmt::check_relative("tenant/worker-1").has_value());
  EXPECT_TRUE(fmt::check_relative("/abs").has_value());
  EXPECT_TRUE(fmt::check_relative("..").has_value());
  EXPECT_TRUE(fmt::check_relative("a/../../b").has_value());
  EXPECT_TRUE(fmt::check_relative("a//b").has_value());
  EXPECT_TRUE(fmt::check_relative("a/").has_value());
  EXPECT_TRUE(fmt::check_relative("./a").has_value());
}
