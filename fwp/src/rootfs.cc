#include "rootfs.h"

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <array>
#include <cerrno>

namespace plume::fwp::detail {
namespace {

constexpr std::array<const char*, kMaxHostDirs> kDefaultHostDirs = {"usr", "bin",   "sbin",
                                                                     "lib", "lib64", "etc"};

// Device nodes bound from the host into the worker's /dev: the harmless ones every program expects.
struct DevNode {
  const char* target;
  const char* source;
};
constexpr std::array<DevNode, 6> kDevNodes = {{{"dev/null", "/dev/null"},
                                               {"dev/zero", "/dev/zero"},
                                               {"dev/full", "/dev/full"},
                                               {"dev/random", "/dev/random"},
                                               {"dev/urandom", "/dev/urandom"},
                                               {"dev/tty", "/dev/tty"}}};
struct DevLink {
  const char* path;
  const char* target;
};
constexpr std::array<DevLink, 4> kDevLinks = {{{"dev/fd", "/proc/self/fd"},
                                               {"dev/stdin", "/proc/self/fd/0"},
                                               {"dev/stdout", "/proc/self/fd/1"},
                                               {"dev/stderr", "/proc/self/fd/2"}}};

bool is_dir(const char* rel) {
  struct stat st {};
  // lstat: a symlink in a tenant's rootfs must not redirect a mount outside the new root.
  return ::lstat(rel, &st) == 0 && S_ISDIR(st.st_mode);
}

// Sets mount attributes without clearing any: in a user namespace the flags a mount inherited from
// a more privileged namespace (nosuid, nodev, noexec, atime) are locked, and mount_setattr, unlike
// a MS_REMOUNT, never has to restate them.
bool set_attrs(const char* rel, uint64_t attrs, bool recursive) {
  struct mount_attr attr {};
  attr.attr_set = attrs;
  const unsigned flags = recursive ? AT_RECURSIVE : 0U;
  return ::mount_setattr(AT_FDCWD, rel, flags, &attr, sizeof attr) == 0;
}

StepFailure mount_proc() {
  if (!is_dir("proc")) return step_ok();
  // The new pid namespace's proc; mounted before pivot_root, while the host's fully visible proc
  // is still in this mount namespace (the kernel refuses a proc mount otherwise).
  if (::mount("proc", "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0) {
    return step_errno("mount proc", "/proc");
  }
  return step_ok();
}

StepFailure mount_tmp() {
  if (!is_dir("tmp")) return step_ok();
  if (::mount("tmpfs", "tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=64m") != 0) {
    return step_errno("mount tmpfs", "/tmp");
  }
  return step_ok();
}

StepFailure mount_dev() {
  if (!is_dir("dev")) return step_ok();
  if (::mount("tmpfs", "dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=64k") != 0) {
    return step_errno("mount tmpfs", "/dev");
  }
  for (const DevNode& node : kDevNodes) {
    const int fd = ::open(node.target, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0666);
    if (fd < 0) return step_errno("open O_CREAT", node.target);
    ::close(fd);
    if (::mount(node.source, node.target, nullptr, MS_BIND, nullptr) != 0) {
      if (errno == ENOENT) {  // the host lacks this node: leave it out
        ::unlink(node.target);
        continue;
      }
      return step_errno("mount bind", node.source);
    }
    if (!set_attrs(node.target, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC, false)) {
      return step_errno("mount_setattr", node.target);
    }
  }
  for (const DevLink& link : kDevLinks) {
    if (::symlink(link.target, link.path) != 0) return step_errno("symlink", link.path);
  }
  if (::mkdir("dev/shm", 01777) != 0) return step_errno("mkdir", "/dev/shm");
  if (::mount("tmpfs", "dev/shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
              "mode=1777,size=64m") != 0) {
    return step_errno("mount tmpfs", "/dev/shm");
  }
  if (!set_attrs("dev", MOUNT_ATTR_RDONLY, false)) return step_errno("mount_setattr", "/dev");
  return step_ok();
}

// Default view: a small tmpfs with the host's system directories bound read-only.
StepFailure build_default_view(const RootfsPlan& plan) {
  if (::mount("tmpfs", plan.staging, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m") != 0) {
    return step_errno("mount tmpfs", plan.staging);
  }
  if (::chdir(plan.staging) != 0) return step_errno("chdir", plan.staging);
  for (size_t i = 0; i < plan.n_host_dirs; ++i) {
    const HostDir& dir = plan.host_dirs[i];
    if (dir.link_target != nullptr) {
      if (::symlink(dir.link_target, dir.name) != 0) return step_errno("symlink", dir.source);
      continue;
    }
    if (::mkdir(dir.name, 0755) != 0) return step_errno("mkdir", dir.source);
    if (::mount(dir.source, dir.name, nullptr, MS_BIND | MS_REC, nullptr) != 0) {
      return step_errno("mount bind", dir.source);
    }
    if (!set_attrs(dir.name, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, true)) {
      return step_errno("mount_setattr", dir.source);
    }
  }
  for (const char* dir : {"proc", "tmp", "dev"}) {
    if (::mkdir(dir, 0755) != 0) return step_errno("mkdir", dir);
  }
  return step_ok();
}

// A tenant's directory (e.g. an OCI bundle's rootfs) bound as the new root.
StepFailure build_path_view(const RootfsPlan& plan) {
  if (::mount(plan.path, plan.staging, nullptr, MS_BIND | MS_REC, nullptr) != 0) {
    return step_errno("mount bind", plan.path);
  }
  if (::chdir(plan.staging) != 0) return step_errno("chdir", plan.staging);
  // Read-only before /proc, /tmp and /dev are mounted on top, so that those stay as they are.
  uint64_t attrs = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
  if (plan.read_only) attrs |= MOUNT_ATTR_RDONLY;
  if (!set_attrs(".", attrs, true)) return step_errno("mount_setattr", plan.path);
  return step_ok();
}

}  // namespace

void prepare_rootfs(const RootfsSpec& spec, RootfsPlan& plan, RootfsStorage& storage) {
  plan.staging = spec.staging_dir.c_str();
  plan.path = spec.path.empty() ? nullptr : spec.path.c_str();
  plan.read_only = spec.read_only;
  plan.n_host_dirs = 0;
  if (plan.path != nullptr) return;
  static constexpr std::array<const char*, kMaxHostDirs> kSources = {"/usr", "/bin",   "/sbin",
                                                                     "/lib", "/lib64", "/etc"};
  for (size_t i = 0; i < kDefaultHostDirs.size(); ++i) {
    struct stat st {};
    if (::lstat(kSources[i], &st) != 0) continue;
    HostDir dir;
    dir.name = kDefaultHostDirs[i];
    dir.source = kSources[i];
    if (S_ISLNK(st.st_mode)) {
      char target[4096];
      const ssize_t n = ::readlink(kSources[i], target, sizeof target - 1);
      if (n <= 0) continue;
      storage.link_targets[i].assign(target, static_cast<size_t>(n));
      dir.link_target = storage.link_targets[i].c_str();
    } else if (!S_ISDIR(st.st_mode)) {
      continue;
    }
    plan.host_dirs[plan.n_host_dirs++] = dir;
  }
}

StepFailure enter_rootfs(const RootfsPlan& plan, const char* cwd) {
  // Nothing mounted from here on propagates back to the host.
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
    return step_errno("mount MS_PRIVATE", "/");
  }
  StepFailure f = plan.path == nullptr ? build_default_view(plan) : build_path_view(plan);
  if (!f.ok()) return f;
  if (f = mount_proc(); !f.ok()) return f;
  if (f = mount_tmp(); !f.ok()) return f;
  if (f = mount_dev(); !f.ok()) return f;
  if (plan.path == nullptr && plan.read_only && !set_attrs(".", MOUNT_ATTR_RDONLY, false)) {
    return step_errno("mount_setattr", plan.staging);
  }
  // pivot_root(".", ".") stacks the old root on top of the new one; detaching it leaves only the
  // new root, with no put_old directory needed.
  if (::syscall(SYS_pivot_root, ".", ".") != 0) return step_errno("pivot_root", plan.staging);
  if (::umount2(".", MNT_DETACH) != 0) return step_errno("umount2 old root", plan.staging);
  if (::chdir("/") != 0) return step_errno("chdir", "/");
  if (::chdir(cwd) != 0) return step_errno("chdir", cwd);
  return step_ok();
}

}  // namespace plume::fwp::detail
