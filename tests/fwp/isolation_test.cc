// Isolation of a live worker, checked from outside through /proc/<pid>/ and from inside through
// what the worker itself can see.
#include <grp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "fwp/spawn_fixture.h"

namespace plume::fwp::test {
namespace {

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The value of "Key:\t..." in /proc/<pid>/status.
std::string status_field(const std::string& status, const std::string& key) {
  const std::string prefix = key + ":\t";
  const auto at = status.find("\n" + prefix);
  if (at == std::string::npos) return "<missing>";
  const auto begin = at + 1 + prefix.size();
  std::string value = status.substr(begin, status.find('\n', begin) - begin);
  while (!value.empty() && value.back() == ' ') value.pop_back();
  return value;
}

ino_t ns_inode(const std::string& pid, const char* ns) {
  struct stat st {};
  const std::string path = "/proc/" + pid + "/ns/" + ns;
  if (::stat(path.c_str(), &st) != 0) return 0;
  return st.st_ino;
}

// Interfaces listed in /proc/net/dev output (the lines after the two header lines).
std::vector<std::string> interfaces(const std::string& net_dev) {
  std::vector<std::string> names;
  std::istringstream lines(net_dev);
  std::string line;
  while (std::getline(lines, line)) {
    const auto colon = line.find(':');
    if (colon == std::string::npos || line.find('|') != std::string::npos) continue;
    std::string name = line.substr(0, colon);
    name.erase(0, name.find_first_not_of(' '));
    names.push_back(name);
  }
  return names;
}

TEST_F(SpawnTest, LiveWorkerIsConfinedAsSeenFromOutside) {
  // A supervisor with a supplementary group (here: another tenant's gid) must not pass it on.
  std::vector<gid_t> saved(static_cast<size_t>(::getgroups(0, nullptr)));
  ASSERT_GE(::getgroups(static_cast<int>(saved.size()), saved.data()), 0);
  const gid_t extra = kOtherTenantHostId;
  ASSERT_EQ(::setgroups(1, &extra), 0);
  auto w = start(make_spec({"/bin/sh", "-c", "echo ready; read x"}));
  ASSERT_EQ(::setgroups(saved.size(), saved.data()), 0);
  ASSERT_TRUE(w.ok()) << w.error().message();
  ASSERT_TRUE(w->read_until("ready\n")) << w->output;
  const std::string pid = std::to_string(w->proc.pid);

  const std::string status = slurp("/proc/" + pid + "/status");
  EXPECT_EQ(status_field(status, "Seccomp"), "2");
  EXPECT_EQ(status_field(status, "NoNewPrivs"), "1");
  for (const char* cap : {"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"}) {
    EXPECT_EQ(status_field(status, cap), "0000000000000000") << cap;
  }
  // Real, effective, saved and filesystem ids: the tenant's outside id, never root.
  const std::string host_id = std::to_string(kHostId);
  const std::string ids = host_id + "\t" + host_id + "\t" + host_id + "\t" + host_id;
  EXPECT_EQ(status_field(status, "Uid"), ids);
  EXPECT_EQ(status_field(status, "Gid"), ids);
  EXPECT_EQ(status_field(status, "Groups"), "") << "supplementary groups were not dropped";
  EXPECT_EQ(status_field(status, "NSpid"), pid + "\t1") << "worker is pid 1 of its namespace";

  for (const char* ns : {"user", "pid", "mnt", "ipc", "uts", "net", "cgroup"}) {
    const ino_t mine = ns_inode("self", ns);
    const ino_t theirs = ns_inode(pid, ns);
    ASSERT_NE(theirs, 0U) << ns;
    EXPECT_NE(mine, theirs) << "worker shares our " << ns << " namespace";
  }

  std::istringstream uid_map(slurp("/proc/" + pid + "/uid_map"));
  uint64_t inside = 1, outside = 0, count = 0;
  uid_map >> inside >> outside >> count;
  EXPECT_EQ(inside, 0U);
  EXPECT_EQ(outside, kTenantBase);
  EXPECT_EQ(count, 65536U);
  std::istringstream gid_map(slurp("/proc/" + pid + "/gid_map"));
  gid_map >> inside >> outside >> count;
  EXPECT_EQ(inside, 0U);
  EXPECT_EQ(outside, kTenantBase);
  EXPECT_EQ(count, 65536U);

  // Its cgroup is the one CgroupManager made, in every hierarchy, and the limits are in force.
  const std::string suffix = "/" + cgroups().parent() + "/" + w->group;
  const std::string membership = slurp("/proc/" + pid + "/cgroup");
  std::istringstream lines(membership);
  std::string line;
  int checked = 0;
  while (std::getline(lines, line)) {
    const bool relevant = cgroups().version() == CgroupVersion::v2
                              ? line.rfind("0::", 0) == 0
                              : line.find(":memory:") != std::string::npos ||
                                    line.find(":pids:") != std::string::npos;
    if (!relevant) continue;
    ++checked;
    EXPECT_TRUE(line.size() >= suffix.size() &&
                line.compare(line.size() - suffix.size(), suffix.size(), suffix) == 0)
        << line << " is not in " << suffix;
  }
  EXPECT_GE(checked, 1) << membership;
  bool saw_pids_max = false;
  bool saw_memory_max = false;
  for (const std::string& dir : cgroups().directories(w->group)) {
    if (::access((dir + "/pids.max").c_str(), F_OK) == 0) {
      EXPECT_EQ(slurp(dir + "/pids.max"), "64\n");
      saw_pids_max = true;
    }
    for (const char* file : {"/memory.limit_in_bytes", "/memory.max"}) {
      if (::access((dir + file).c_str(), F_OK) == 0) {
        EXPECT_EQ(slurp(dir + file), std::to_string(256ULL << 20) + "\n");
        saw_memory_max = true;
      }
    }
  }
  EXPECT_TRUE(saw_pids_max);
  EXPECT_TRUE(saw_memory_max);

  ASSERT_EQ(::write(w->in.get(), "\n", 1), 1);
  auto exit = w->wait();
  ASSERT_TRUE(exit.has_value());
  EXPECT_TRUE(exit->exited);
  EXPECT_EQ(exit->code, 0);
}

TEST_F(SpawnTest, WorkerSeesOnlyItsOwnWorld) {
  const char* script =
      "echo pid=$$;"
      "echo netdev-begin; cat /proc/net/dev; echo netdev-end;"
      "echo host=$(cat /proc/sys/kernel/hostname);"
      "echo procs: $(ls /proc | grep '^[0-9]');"
      "if touch /x 2>/dev/null; then echo root=rw; else echo root=ro; fi;"
      "if touch /usr/x 2>/dev/null; then echo usr=rw; else echo usr=ro; fi;"
      "if echo hi > /tmp/y && [ \"$(cat /tmp/y)\" = hi ]; then echo tmp=rw; fi;"
      "if [ -e /work ] || [ -e /root ] || [ -e /home ]; then echo host=visible; fi;"
      "echo null=$(echo x > /dev/null && echo ok);"
      "echo done";
  auto spec = make_spec({"/bin/sh", "-c", script});
  auto w = start(spec);
  ASSERT_TRUE(w.ok()) << w.error().message();
  w->read_to_eof();
  auto exit = w->wait();
  ASSERT_TRUE(exit.has_value());
  EXPECT_TRUE(exit->exited && exit->code == 0) << w->output;
  const std::string& out = w->output;
  ASSERT_NE(out.find("done"), std::string::npos) << out;
  EXPECT_NE(out.find("pid=1\n"), std::string::npos) << out;
  const auto net_begin = out.find("netdev-begin\n");
  const auto net_end = out.find("netdev-end\n");
  ASSERT_TRUE(net_begin != std::string::npos && net_end != std::string::npos) << out;
  EXPECT_EQ(interfaces(out.substr(net_begin + 13, net_end - net_begin - 13)),
            std::vector<std::string>{"lo"})
      << out;
  EXPECT_NE(out.find("host=" + spec.name + "\n"), std::string::npos) << out;
  // sh itself, the subshell and the ls and grep of the pipeline: small pids, nothing of the host.
  const auto procs_at = out.find("procs:");
  ASSERT_NE(procs_at, std::string::npos) << out;
  std::istringstream procs(out.substr(procs_at + 6, out.find('\n', procs_at) - procs_at - 6));
  std::vector<int> pids;
  for (int p; procs >> p;) pids.push_back(p);
  ASSERT_FALSE(pids.empty()) << out;
  EXPECT_EQ(pids.front(), 1) << out;
  EXPECT_LE(pids.size(), 4U) << out;
  for (int p : pids) EXPECT_LT(p, 10) << out;
  EXPECT_NE(out.find("root=ro\n"), std::string::npos) << out;
  EXPECT_NE(out.find("usr=ro\n"), std::string::npos) << out;
  EXPECT_NE(out.find("tmp=rw\n"), std::string::npos) << out;
  EXPECT_EQ(out.find("host=visible"), std::string::npos) << out;
  EXPECT_NE(out.find("null=ok\n"), std::string::npos) << out;
}

TEST_F(SpawnTest, LoopbackIsUp) {
  auto w = start(make_tenant_spec({"/bin/hostile", "loopback"}));
  ASSERT_TRUE(w.ok()) << w.error().message();
  w->read_to_eof();
  EXPECT_NE(w->output.find("loopback: OK\n"), std::string::npos) << w->output;
  auto exit = w->wait();
  ASSERT_TRUE(exit.has_value());
  EXPECT_TRUE(exit->exited && exit->code == 0);
}

TEST_F(SpawnTest, TenantRootfsIsTheWholeViewAndReadOnly) {
  if (::access((tenant_rootfs() + "/bin/busybox").c_str(), X_OK) != 0) {
    GTEST_SKIP() << "needs /bin/busybox (Debian package busybox-static) for a shell in the rootfs";
  }
  auto w = start(make_tenant_spec(
      {"/bin/sh", "-c", "ls /; if touch /x 2>/dev/null; then echo root=rw; else echo root=ro; fi"}));
  ASSERT_TRUE(w.ok()) << w.error().message();
  w->read_to_eof();
  auto exit = w->wait();
  ASSERT_TRUE(exit.has_value());
  EXPECT_TRUE(exit->exited && exit->code == 0) << w->output;
  for (const char* dir : {"bin", "data", "dev", "proc", "tmp"}) {
    EXPECT_NE(w->output.find(dir), std::string::npos) << dir << " missing: " << w->output;
  }
  EXPECT_EQ(w->output.find("usr"), std::string::npos) << "host /usr leaked: " << w->output;
  EXPECT_NE(w->output.find("root=ro"), std::string::npos) << w->output;
}

}  // namespace
}  // namespace plume::fwp::test
