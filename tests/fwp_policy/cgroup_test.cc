// CgroupManager against the host's real cgroups: real limits, real children, real OOM kills.
// Needs root; every test works under its own parent ("plume-test-<pid>-<n>") and removes it.
#include "plume/fwp/cgroup.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/magic.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <time.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>

#include "child.h"

namespace plume::fwp {
namespace {

constexpr const char* kRoot = "/sys/fs/cgroup";

std::string unique_parent() {
  static int counter = 0;
  return "plume-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string trimmed(const std::string& path) {
  std::string s = slurp(path);
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

bool dir_exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

bool host_is_v2() {
  struct statfs s {};
  return ::statfs(kRoot, &s) == 0 && s.f_type == CGROUP2_SUPER_MAGIC;
}

// A child that waits on a pipe: one byte runs `action`, EOF makes it exit.
template <class F>
struct Blocked {
  pid_t pid = -1;
  int go = -1;
  void release() {
    char c = 'g';
    test::write_all(go, &c, 1);
  }
  void close_go() {
    if (go >= 0) ::close(go);
    go = -1;
  }
};

template <class F>
Blocked<F> spawn_blocked(F action) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return {};
  pid_t pid = ::fork();
  if (pid == 0) {
    ::close(fds[1]);
    char c;
    ssize_t n;
    do {
      n = ::read(fds[0], &c, 1);
    } while (n < 0 && errno == EINTR);
    if (n == 1) action();
    ::_exit(0);
  }
  ::close(fds[0]);
  return Blocked<F>{pid, fds[1]};
}

auto idle = [] {};

class CgroupTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root: creates cgroups under " << kRoot;
    auto m = CgroupManager::open(kRoot, unique_parent());
    ASSERT_TRUE(m) << m.error().message();
    mgr_.emplace(std::move(*m));
    auto r = mgr_->create_root();
    ASSERT_TRUE(r) << r.error().message();
  }
  void TearDown() override {
    if (!mgr_) return;
    auto k = mgr_->kill_all("");
    EXPECT_TRUE(k) << k.error().message();
    auto r = mgr_->remove("");
    EXPECT_TRUE(r) << r.error().message();
    for (const auto& d : mgr_->directories("")) EXPECT_FALSE(dir_exists(d)) << d;
  }
  CgroupManager& mgr() { return *mgr_; }
  // The directory of `relative` in the hierarchy that carries `file` (v1) or the one tree (v2).
  std::string file_of(const std::string& relative, const std::string& file) {
    for (const auto& d : mgr().directories(relative))
      if (::access((d + "/" + file).c_str(), F_OK) == 0) return d + "/" + file;
    return "(no " + file + ")";
  }
  std::optional<CgroupManager> mgr_;
};

TEST(CgroupOpen, RefusesADirectoryWithoutCgroups) {
  char dir[] = "/tmp/plume-cgroup-open-XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  auto m = CgroupManager::open(dir, "plume");
  ::rmdir(dir);
  ASSERT_FALSE(m);
  EXPECT_NE(m.error().message().find("memory"), std::string::npos) << m.error().message();
}

TEST(CgroupOpen, RefusesEscapingParent) {
  auto m = CgroupManager::open(kRoot, "../etc");
  ASSERT_FALSE(m);
  EXPECT_NE(m.error().message().find("bad path component"), std::string::npos);
}

TEST(CgroupOpen, RefusesACgroup2MountWithoutControllers) {
  // This machine's hybrid layout: an empty cgroup2 at /sys/fs/cgroup/unified.
  const std::string unified = std::string(kRoot) + "/unified";
  struct statfs s {};
  if (::statfs(unified.c_str(), &s) != 0 || s.f_type != CGROUP2_SUPER_MAGIC ||
      slurp(unified + "/cgroup.controllers").find("memory") != std::string::npos)
    GTEST_SKIP() << "no controller-less cgroup2 mount at " << unified;
  auto m = CgroupManager::open(unified, "plume");
  ASSERT_FALSE(m);
  EXPECT_NE(m.error().message().find("lacks the 'memory' controller"), std::string::npos)
      << m.error().message();
}

TEST_F(CgroupTest, DetectsTheHostLayout) {
  if (host_is_v2()) {
    EXPECT_EQ(mgr().version(), CgroupVersion::v2);
    ASSERT_EQ(mgr().directories("t/w").size(), 1u);
    ASSERT_TRUE(mgr().create("t/w", {}));
    // Controllers are handed down to every inner level; the leaf keeps none (it holds tasks).
    for (const char* inner : {"", "t"}) {
      std::string sc = slurp(mgr().directories(inner)[0] + "/cgroup.subtree_control");
      for (const char* c : {"memory", "pids", "cpu"})
        EXPECT_NE(sc.find(c), std::string::npos) << inner << ": " << sc;
    }
    EXPECT_EQ(trimmed(mgr().directories("t/w")[0] + "/cgroup.subtree_control"), "");
    auto fd = mgr().open_dir_for_clone("t/w");
    ASSERT_TRUE(fd) << fd.error().message();
    EXPECT_TRUE(fd->valid());
    return;
  }
  // This machine: v1 controllers plus an empty cgroup2 at /sys/fs/cgroup/unified. v1 must win.
  EXPECT_EQ(mgr().version(), CgroupVersion::v1);
  auto dirs = mgr().directories("t/w");
  auto has = [&](const std::string& ctrl) {
    std::string want = std::string(kRoot) + "/" + ctrl + "/" + mgr().parent() + "/t/w";
    return std::find(dirs.begin(), dirs.end(), want) != dirs.end();
  };
  EXPECT_TRUE(has("memory"));
  EXPECT_TRUE(has("pids"));
  for (const auto& d : dirs) EXPECT_EQ(d.find("unified"), std::string::npos) << d;
  for (const auto& d : mgr().directories("")) EXPECT_TRUE(dir_exists(d)) << d;
  auto procs = mgr().procs_files("t/w");
  ASSERT_EQ(procs.size(), dirs.size());
  EXPECT_EQ(procs[0], dirs[0] + "/cgroup.procs");
  auto fd = mgr().open_dir_for_clone("t/w");
  ASSERT_TRUE(fd);
  EXPECT_FALSE(fd->valid());  // CLONE_INTO_CGROUP is a v2 feature
}

TEST_F(CgroupTest, WritesLimitsAndReadsThemBack) {
  CgroupLimits tenant{.memory_bytes = 64 << 20, .pids_max = 32, .cpu_percent = 150, .cpu_weight = 200};
  CgroupLimits worker{.memory_bytes = 32 << 20, .pids_max = 8, .cpu_percent = 25, .cpu_weight = 100};
  auto r = mgr().create("t", tenant);
  ASSERT_TRUE(r) << r.error().message();
  r = mgr().create("t/w", worker);
  ASSERT_TRUE(r) << r.error().message();
  r = mgr().create("t/free", {});  // zero means "leave the default"
  ASSERT_TRUE(r) << r.error().message();

  EXPECT_EQ(trimmed(file_of("t/w", "pids.max")), "8");
  EXPECT_EQ(trimmed(file_of("t", "pids.max")), "32");
  EXPECT_EQ(trimmed(file_of("t/free", "pids.max")), "max");
  if (mgr().version() == CgroupVersion::v1) {
    EXPECT_EQ(trimmed(file_of("t/w", "memory.limit_in_bytes")), std::to_string(32 << 20));
    EXPECT_EQ(trimmed(file_of("t", "memory.limit_in_bytes")), std::to_string(64 << 20));
    std::string memsw = file_of("t/w", "memory.memsw.limit_in_bytes");
    if (memsw[0] == '/') {
      EXPECT_EQ(trimmed(memsw), std::to_string(32 << 20));
    }
    EXPECT_EQ(trimmed(file_of("t/w", "cpu.cfs_quota_us")), "25000");
    EXPECT_EQ(trimmed(file_of("t/w", "cpu.cfs_period_us")), "100000");
    EXPECT_EQ(trimmed(file_of("t", "cpu.cfs_quota_us")), "150000");
    EXPECT_EQ(trimmed(file_of("t", "cpu.shares")), "2048");
    EXPECT_EQ(trimmed(file_of("t/w", "cpu.shares")), "1024");
    EXPECT_EQ(trimmed(file_of("t/free", "cpu.cfs_quota_us")), "-1");
  } else {
    EXPECT_EQ(trimmed(file_of("t/w", "memory.max")), std::to_string(32 << 20));
    EXPECT_EQ(trimmed(file_of("t/w", "cpu.max")), "25000 100000");
    EXPECT_EQ(trimmed(file_of("t", "cpu.weight")), "200");
  }

  // Lowering a limit later works too (v1 keeps memsw >= memory; the manager orders the writes).
  worker.memory_bytes = 16 << 20;
  r = mgr().create("t/w", worker);
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(trimmed(file_of("t/w", mgr().version() == CgroupVersion::v1 ? "memory.limit_in_bytes"
                                                                        : "memory.max")),
            std::to_string(16 << 20));
}

TEST_F(CgroupTest, WriteErrorsNameTheFile) {
  if (mgr().version() != CgroupVersion::v1) GTEST_SKIP() << "v1 rule: a child's CFS quota fits its parent's";
  ASSERT_TRUE(mgr().create("t", {.cpu_percent = 50}));
  auto r = mgr().create("t/w", {.cpu_percent = 100});
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("cpu.cfs_quota_us"), std::string::npos) << r.error().message();
  EXPECT_EQ(r.error().err, EINVAL);
}

TEST_F(CgroupTest, AttachesARealChild) {
  ASSERT_TRUE(mgr().create("t/w", {.pids_max = 16}));
  auto child = spawn_blocked(idle);
  ASSERT_GT(child.pid, 0);
  auto r = mgr().attach("t/w", child.pid);
  ASSERT_TRUE(r) << r.error().message();
  for (const auto& f : mgr().procs_files("t/w"))
    EXPECT_NE(slurp(f).find(std::to_string(child.pid) + "\n"), std::string::npos) << f;
  EXPECT_EQ(mgr().processes("t/w"), std::vector<pid_t>{child.pid});
  EXPECT_EQ(mgr().processes("t"), std::vector<pid_t>{child.pid});  // includes descendants
  EXPECT_NE(slurp("/proc/" + std::to_string(child.pid) + "/cgroup").find("/" + mgr().parent() + "/t/w"),
            std::string::npos);
  auto s = mgr().stats("t/w");
  ASSERT_TRUE(s) << s.error().message();
  EXPECT_EQ(s->pids_current, 1u);

  child.close_go();
  int status = test::wait_child(child.pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_TRUE(mgr().processes("t/w").empty());
}

TEST_F(CgroupTest, MemoryLimitOomKillsTheChild) {
  constexpr uint64_t kLimit = 32 << 20;
  ASSERT_TRUE(mgr().create("t/w", {.memory_bytes = kLimit}));
  auto child = spawn_blocked([] {
    constexpr size_t kSize = 96 << 20;
    void* p = ::mmap(nullptr, kSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) ::_exit(3);
    auto* bytes = static_cast<volatile char*>(p);
    for (size_t i = 0; i < kSize; i += 4096) bytes[i] = 1;
    ::_exit(4);  // reached only if the limit did not hold
  });
  ASSERT_GT(child.pid, 0);
  ASSERT_TRUE(mgr().attach("t/w", child.pid));
  child.release();
  int status = test::wait_child(child.pid);
  child.close_go();
  ASSERT_TRUE(WIFSIGNALED(status)) << "status " << status;
  EXPECT_EQ(WTERMSIG(status), SIGKILL);
  auto s = mgr().stats("t/w");
  ASSERT_TRUE(s) << s.error().message();
  EXPECT_GE(s->oom_kills, 1u);
  EXPECT_GE(s->memory_peak_bytes, kLimit * 8 / 10);
  EXPECT_LE(s->memory_peak_bytes, kLimit);
}

TEST_F(CgroupTest, ForkLoopStopsAtPidsMax) {
  ASSERT_TRUE(mgr().create("t/w", {.pids_max = 4}));
  int report[2];
  ASSERT_EQ(::pipe2(report, O_CLOEXEC), 0);
  auto child = spawn_blocked([&] {
    // Grandchildren wait for EOF on `hold`, which only this child keeps open.
    int hold[2];
    if (::pipe(hold) != 0) ::_exit(2);
    int forked = 0;
    for (int i = 0; i < 16; ++i) {
      pid_t p = ::fork();
      if (p == 0) {
        ::close(hold[1]);
        char c;
        while (::read(hold[0], &c, 1) < 0 && errno == EINTR) {
        }
        ::_exit(0);
      }
      if (p < 0) break;
      ++forked;
    }
    int err = errno;
    test::write_all(report[1], &forked, sizeof forked);
    test::write_all(report[1], &err, sizeof err);
    ::close(hold[1]);
    while (::wait(nullptr) > 0 || errno == EINTR) {
    }
  });
  ::close(report[1]);
  ASSERT_GT(child.pid, 0);
  ASSERT_TRUE(mgr().attach("t/w", child.pid));
  child.release();
  std::string got = test::read_all(report[0]);
  ::close(report[0]);
  int status = test::wait_child(child.pid);
  child.close_go();
  ASSERT_EQ(got.size(), 2 * sizeof(int));
  int forked = 0, err = 0;
  std::memcpy(&forked, got.data(), sizeof forked);
  std::memcpy(&err, got.data() + sizeof forked, sizeof err);
  EXPECT_EQ(forked, 3);  // the child itself is the fourth
  EXPECT_EQ(err, EAGAIN);
  EXPECT_TRUE(WIFEXITED(status));
  auto s = mgr().stats("t/w");
  ASSERT_TRUE(s) << s.error().message();
  EXPECT_GE(s->pids_max_hits, 1u);
}

TEST_F(CgroupTest, CpuUsageGrowsWithWork) {
  ASSERT_TRUE(mgr().create("t/w", {.cpu_percent = 100}));
  auto before = mgr().stats("t/w");
  ASSERT_TRUE(before) << before.error().message();
  auto child = spawn_blocked([] {
    timespec ts{};
    do {
      ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    } while (ts.tv_sec == 0 && ts.tv_nsec < 60'000'000);
  });
  ASSERT_GT(child.pid, 0);
  ASSERT_TRUE(mgr().attach("t/w", child.pid));
  child.release();
  int status = test::wait_child(child.pid);
  child.close_go();
  EXPECT_TRUE(WIFEXITED(status));
  auto after = mgr().stats("t/w");
  ASSERT_TRUE(after) << after.error().message();
  EXPECT_GE(after->cpu_usage_ns - before->cpu_usage_ns, 50'000'000u);
}

TEST_F(CgroupTest, KillAllEmptiesTheGroup) {
  ASSERT_TRUE(mgr().create("t/w", {}));
  std::vector<Blocked<decltype(idle)>> kids;
  for (int i = 0; i < 3; ++i) {
    kids.push_back(spawn_blocked(idle));
    ASSERT_GT(kids.back().pid, 0);
    ASSERT_TRUE(mgr().attach("t/w", kids.back().pid));
  }
  EXPECT_EQ(mgr().processes("t").size(), 3u);
  auto n = mgr().kill_all("t");
  ASSERT_TRUE(n) << n.error().message();
  EXPECT_EQ(*n, 3u);
  EXPECT_TRUE(mgr().processes("t").empty());
  for (auto& k : kids) {
    int status = test::wait_child(k.pid);
    k.close_go();
    EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  }
  auto again = mgr().kill_all("t");
  ASSERT_TRUE(again);
  EXPECT_EQ(*again, 0u);
}

TEST_F(CgroupTest, RemoveLeavesNoDirectoryEvenWithALiveProcess) {
  ASSERT_TRUE(mgr().create("t/w", {.memory_bytes = 64 << 20}));
  ASSERT_TRUE(mgr().create("t/w2", {}));
  auto child = spawn_blocked(idle);
  ASSERT_TRUE(mgr().attach("t/w", child.pid));
  auto r = mgr().remove("t");  // rmdir says EBUSY; the manager kills and retries
  ASSERT_TRUE(r) << r.error().message();
  for (const auto& d : mgr().directories("t")) EXPECT_FALSE(dir_exists(d)) << d;
  for (const auto& d : mgr().directories("")) EXPECT_TRUE(dir_exists(d)) << d;
  int status = test::wait_child(child.pid);
  child.close_go();
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  EXPECT_TRUE(mgr().remove("t"));  // already gone: fine
}

TEST_F(CgroupTest, CleanupStaleRemovesWhatACrashedManagerLeft) {
  Blocked<decltype(idle)> child;
  {
    auto crashed = CgroupManager::open(kRoot, mgr().parent());
    ASSERT_TRUE(crashed);
    ASSERT_TRUE(crashed->create("a/w1", {.pids_max = 8}));
    ASSERT_TRUE(crashed->create("b", {}));
    child = spawn_blocked(idle);
    ASSERT_TRUE(crashed->attach("a/w1", child.pid));
  }  // the manager goes away without removing anything
  auto fresh = CgroupManager::open(kRoot, mgr().parent());
  ASSERT_TRUE(fresh);
  auto n = fresh->cleanup_stale();
  ASSERT_TRUE(n) << n.error().message();
  EXPECT_EQ(*n, 3u);  // a, a/w1, b
  for (const char* g : {"a", "a/w1", "b"})
    for (const auto& d : fresh->directories(g)) EXPECT_FALSE(dir_exists(d)) << d;
  for (const auto& d : fresh->directories("")) EXPECT_TRUE(dir_exists(d)) << d;
  int status = test::wait_child(child.pid);
  child.close_go();
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  auto none = fresh->cleanup_stale();
  ASSERT_TRUE(none);
  EXPECT_EQ(*none, 0u);
}

TEST_F(CgroupTest, RefusesBadGroupNames) {
  EXPECT_FALSE(mgr().create("", {}));
  EXPECT_FALSE(mgr().create("../x", {}));
  EXPECT_FALSE(mgr().attach("/abs", ::getpid()));
  EXPECT_FALSE(mgr().stats("t/../../x"));
  auto missing = mgr().stats("nope");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().err, ENOENT);
}

}  // namespace
}  // namespace plume::fwp
