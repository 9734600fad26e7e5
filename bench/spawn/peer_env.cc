// The environment the local peers and the Plume peer start from, shared by bench/spawn and
// bench/fwp: a scratch rootfs with only /first_instruction, crun's bundle, the hybrid-cgroup
// workaround for crun, and the fd-3 timestamp pipe.
#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <linux/magic.h>
#include <nlohmann/json.hpp>

#include "peers.h"

namespace fs = std::filesystem;

namespace plume::bench {
namespace {

// The OCI runtime spec that `crun spec` would write (namespaces, mounts, masked paths), running
// /first_instruction from a read-only rootfs without a terminal. We are root: no user namespace.
nlohmann::json crun_config(const std::string& rootfs) {
  using nlohmann::json;
  auto mount = [](const char* dst, const char* type, const char* src, std::vector<std::string> opts) {
    return json{{"destination", dst}, {"type", type}, {"source", src}, {"options", opts}};
  };
  std::vector<std::string> caps = {"CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"};
  return json{
      {"ociVersion", "1.0.0"},
      {"process",
       {{"terminal", false},
        {"user", {{"uid", 0}, {"gid", 0}}},
        {"args", {"/first_instruction"}},
        {"env", {"PATH=/usr/bin:/bin"}},
        {"cwd", "/"},
        {"capabilities",
         {{"bounding", caps}, {"effective", caps}, {"permitted", caps}, {"ambient", caps},
          {"inheritable", json::array()}}},
        {"rlimits", {{{"type", "RLIMIT_NOFILE"}, {"hard", 1024}, {"soft", 1024}}}},
        {"noNewPrivileges", true}}},
      {"root", {{"path", rootfs}, {"readonly", true}}},
      {"hostname", "crun"},
      {"mounts",
       {mount("/proc", "proc", "proc", {}),
        mount("/dev", "tmpfs", "tmpfs", {"nosuid", "strictatime", "mode=755", "size=65536k"}),
        mount("/dev/pts", "devpts", "devpts",
              {"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}),
        mount("/dev/shm", "tmpfs", "shm", {"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}),
        mount("/dev/mqueue", "mqueue", "mqueue", {"nosuid", "noexec", "nodev"}),
        mount("/sys", "sysfs", "sysfs", {"nosuid", "noexec", "nodev", "ro"}),
        mount("/sys/fs/cgroup", "cgroup", "cgroup", {"nosuid", "noexec", "nodev", "relatime", "ro"})}},
      {"linux",
       {{"resources", {{"devices", {{{"allow", false}, {"access", "rwm"}}}}}},
        {"namespaces",
         {{{"type", "pid"}}, {{"type", "network"}}, {{"type", "ipc"}}, {{"type", "uts"}}, {{"type", "mount"}}}},
        {"maskedPaths",
         {"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
          "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"}},
        {"readonlyPaths", {"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}}}}};
}

}  // namespace

// A scratch directory: rootfs/ with only /first_instruction and empty mount points (shared by
// bwrap, crun and Plume), bundle/config.json for crun, crun-state/ for crun --root.
SysResult<std::string> make_scratch(const std::string& binary, PeerEnv& env) {
  char tmpl[] = "/tmp/plume-bench-spawn-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) return fail(sys_error("mkdtemp", tmpl));
  std::string dir = tmpl;
  std::error_code ec;
  // Plume workers run as an unprivileged uid of the tenant's range: they need to traverse and exec.
  fs::permissions(dir, fs::perms(0755), ec);
  env.rootfs = dir + "/rootfs";
  env.bundle = dir + "/bundle";
  env.crun_root = dir + "/crun-state";
  for (const auto& d : {env.rootfs, env.rootfs + "/proc", env.rootfs + "/dev", env.rootfs + "/sys",
                        env.rootfs + "/tmp", env.bundle, env.crun_root}) {
    if (::mkdir(d.c_str(), 0755) != 0) return fail(sys_error("mkdir", d));
  }
  env.binary = env.rootfs + "/first_instruction";
  fs::copy_file(binary, env.binary, ec);
  if (ec) return fail(plain_error("copy " + binary, ec.message()));
  if (::chmod(env.binary.c_str(), 0755) != 0) return fail(sys_error("chmod", env.binary));
  std::ofstream cfg(env.bundle + "/config.json");
  cfg << crun_config(env.rootfs).dump(1) << '\n';
  cfg.close();
  if (!cfg) return fail(plain_error("write", env.bundle + "/config.json"));
  return dir;
}

// crun refuses this host's hybrid cgroup layout (v1 controllers plus an empty v2 mount at
// /sys/fs/cgroup/unified). Hide that mount in a private mount namespace for this process and its
// children, once, so that crun's figure holds crun's own cost only.
SysResult<void> hide_unified_cgroup() {
  struct statfs root{};
  struct statfs unified{};
  if (::statfs("/sys/fs/cgroup", &root) != 0 || root.f_type == CGROUP2_SUPER_MAGIC) return {};
  if (::statfs("/sys/fs/cgroup/unified", &unified) != 0 || unified.f_type != CGROUP2_SUPER_MAGIC) return {};
  if (::unshare(CLONE_NEWNS) != 0) return fail(sys_error("unshare", "CLONE_NEWNS"));
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
    return fail(sys_error("mount", "/ (MS_REC|MS_PRIVATE)"));
  }
  if (::umount2("/sys/fs/cgroup/unified", MNT_DETACH) != 0) {
    return fail(sys_error("umount2", "/sys/fs/cgroup/unified"));
  }
  return {};
}

// Every local child gets the write end of one pipe as fd 3 (inherited, not set up per start, so no
// peer pays for a dup2); this process reads each child's 8-byte timestamp after its exit.
SysResult<int> make_timestamp_pipe() {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) return fail(sys_error("pipe2", "timestamp pipe"));
  int rd = ::fcntl(p[0], F_DUPFD_CLOEXEC, 10);
  int wr = ::fcntl(p[1], F_DUPFD_CLOEXEC, 10);
  ::close(p[0]);
  ::close(p[1]);
  if (rd < 0 || wr < 0) return fail(sys_error("fcntl", "F_DUPFD_CLOEXEC"));
  if (::dup2(wr, 3) != 3) return fail(sys_error("dup2", "timestamp pipe to fd 3"));
  ::close(wr);
  if (::fcntl(rd, F_SETFL, O_NONBLOCK) != 0) return fail(sys_error("fcntl", "O_NONBLOCK"));
  return rd;
}

std::string find_tool(const std::string& tool) {
  std::string dirs;
  if (const char* path = std::getenv("PATH"); path != nullptr) dirs = std::string(path) + ":";
  dirs += "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  for (size_t at = 0; at <= dirs.size();) {
    const size_t end = std::min(dirs.find(':', at), dirs.size());
    const std::string dir = dirs.substr(at, end - at);
    at = end + 1;
    if (dir.empty() || dir[0] != '/') continue;  // "" and relative entries mean the cwd: not for root
    std::string p = dir + "/" + tool;
    struct stat st{};
    if (::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(p.c_str(), X_OK) == 0) return p;
  }
  return {};
}

}  // namespace plume::bench
