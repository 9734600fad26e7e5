#include "fwp/spawn_fixture.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>

namespace plume::fwp::test {
namespace fs = std::filesystem;

namespace {

std::atomic<int> g_counter{0};

int remaining_ms(std::chrono::steady_clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - std::chrono::steady_clock::now());
  return left.count() > 0 ? static_cast<int>(left.count()) : 0;
}

// Reads once from fd after poll; returns false on EOF or timeout.
bool read_some(int fd, std::string& out, std::chrono::steady_clock::time_point deadline) {
  pollfd pfd{fd, POLLIN, 0};
  const int n = ::poll(&pfd, 1, remaining_ms(deadline));
  if (n <= 0) return false;
  char buf[4096];
  const ssize_t got = ::read(fd, buf, sizeof buf);
  if (got <= 0) return false;
  out.append(buf, static_cast<size_t>(got));
  return true;
}

void write_file(const std::string& path, const std::string& text, uid_t owner, mode_t mode) {
  std::ofstream(path) << text;
  ASSERT_EQ(::chown(path.c_str(), owner, owner), 0) << path;
  ASSERT_EQ(::chmod(path.c_str(), mode), 0) << path;
}

}  // namespace

bool running_as_root() { return ::geteuid() == 0; }

bool Worker::read_until(std::string_view marker, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (output.find(marker) == std::string::npos) {
    if (!read_some(out.get(), output, deadline)) return false;
  }
  return true;
}

void Worker::read_to_eof(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (read_some(out.get(), output, deadline)) {
  }
}

std::optional<ExitStatus> Worker::wait(std::chrono::milliseconds timeout) {
  pollfd pfd{proc.pidfd.get(), POLLIN, 0};
  if (::poll(&pfd, 1, static_cast<int>(timeout.count())) != 1) return std::nullopt;
  auto status = reap(proc.pidfd.get());
  if (!status) return std::nullopt;
  proc.pidfd.reset();
  return *status;
}

void SpawnTest::SetUp() {
  if (!running_as_root()) GTEST_SKIP() << "needs root: user namespaces with id maps, cgroups";
  staging_ = std::make_unique<TempDir>("staging");
  const std::string parent =
      "plume-test-" + std::to_string(::getpid()) + "-" + std::to_string(g_counter++);
  auto mgr = CgroupManager::open("/sys/fs/cgroup", parent);
  ASSERT_TRUE(mgr.ok()) << mgr.error().message();
  cgroups_.emplace(std::move(*mgr));
  auto root = cgroups_->create_root();
  ASSERT_TRUE(root.ok()) << root.error().message();
  auto tenant = cgroups_->create("t", CgroupLimits{});
  ASSERT_TRUE(tenant.ok()) << tenant.error().message();
}

void SpawnTest::TearDown() {
  if (cgroups_) {
    auto r = cgroups_->remove("");
    EXPECT_TRUE(r.ok()) << r.error().message();
  }
}

CgroupLimits SpawnTest::default_limits() {
  CgroupLimits l;
  l.memory_bytes = 256ULL << 20;
  l.pids_max = 64;
  return l;
}

const CompiledFilter& SpawnTest::filter() {
  static const CompiledFilter compiled = [] {
    auto f = compile_default_profile(SeccompOptions{});
    if (!f) throw std::runtime_error("compile_default_profile: " + f.error().message());
    return std::move(*f);
  }();
  return compiled;
}

SandboxSpec SpawnTest::make_spec(std::vector<std::string> argv) {
  SandboxSpec spec;
  spec.name = "w" + std::to_string(::getpid()) + "-" + std::to_string(g_counter++);
  spec.argv = std::move(argv);
  spec.env = {"PATH=/usr/bin:/bin", "HOME=/tmp", "LC_ALL=C"};
  spec.uid_map = IdMap{0, kTenantBase, 65536};
  spec.gid_map = IdMap{0, kTenantBase, 65536};
  spec.uid = kInsideId;
  spec.gid = kInsideId;
  spec.rootfs.staging_dir = staging();
  spec.seccomp = &filter();
  spec.rlimits = {Rlimit{RLIMIT_CORE, 0, 0}};
  return spec;
}

SandboxSpec SpawnTest::make_tenant_spec(std::vector<std::string> argv) {
  SandboxSpec spec = make_spec(std::move(argv));
  spec.rootfs.path = tenant_rootfs();
  return spec;
}

const std::string& SpawnTest::tenant_rootfs() {
  if (rootfs_) return rootfs_->path();
  rootfs_ = std::make_unique<TempDir>("rootfs");
  const std::string& r = rootfs_->path();
  for (const char* dir : {"bin", "proc", "tmp", "dev", "data"}) {
    fs::create_directory(r + "/" + dir);
    ::chmod((r + "/" + dir).c_str(), 0755);
  }
  fs::copy_file(PLUME_HOSTILE_PATH, r + "/bin/hostile");
  if (fs::exists("/bin/busybox")) {  // busybox-static (Debian); tests needing a shell skip without
    fs::copy_file("/bin/busybox", r + "/bin/busybox");
    fs::create_symlink("busybox", r + "/bin/sh");
  }
  write_file(r + "/data/secret", "another tenant's secret\n", kOtherTenantHostId, 0600);
  write_file(r + "/data/mine", "mine\n", kHostId, 0600);
  return r;
}

Result<Worker, SpawnError> SpawnTest::start(SandboxSpec spec, const CgroupLimits& limits, SpawnService* via) {
  Worker w;
  w.group = "t/w" + std::to_string(groups_++);
  if (auto r = cgroups_->create(w.group, limits); !r) {
    return fail(SpawnError{Step::cgroup_attach, r.error().err, r.error().message()});
  }
  spec.cgroup_procs_files = cgroups_->procs_files(w.group);
  UniqueFd cgroup_dir;
  if (cgroups_->version() == CgroupVersion::v2) {
    auto fd = cgroups_->open_dir_for_clone(w.group);
    if (!fd) return fail(SpawnError{Step::clone, fd.error().err, fd.error().message()});
    cgroup_dir = std::move(*fd);
    spec.cgroup_dir_fd = cgroup_dir.get();
  }
  int in[2];
  int out[2];
  if (::pipe2(in, O_CLOEXEC) != 0 || ::pipe2(out, O_CLOEXEC) != 0) {
    return fail(SpawnError{Step::clone, errno, "pipe2"});
  }
  UniqueFd in_r(in[0]);
  UniqueFd out_w(out[1]);
  w.in.reset(in[1]);
  w.out.reset(out[0]);
  if (spec.granted_fds.empty()) spec.granted_fds = {in_r.get(), out_w.get(), out_w.get()};
  auto proc = wait_for_exec(spawn_via(via, spec));
  if (!proc) return fail(proc.error());
  w.proc = std::move(*proc);
  return w;
}

}  // namespace plume::fwp::test
