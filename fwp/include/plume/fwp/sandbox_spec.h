// SandboxSpec: everything the containment pipeline needs to start one isolated worker. The
// supervisor fills it in (from the tenant, the image and the run request); fwp never reads config.
#pragma once

#include <sys/resource.h>

#include <cstdint>
#include <string>
#include <vector>

#include "plume/fwp/seccomp_profile.h"

namespace plume::fwp {

// One line of /proc/<pid>/uid_map or gid_map: ids [inside, inside+count) map to [outside, ...).
struct IdMap {
  uint32_t inside = 0;
  uint32_t outside = 0;
  uint32_t count = 0;
};

// Limits written into the worker's cgroup. Zero means "no limit of this kind".
struct CgroupLimits {
  uint64_t memory_bytes = 0;  // memory.max / memory.limit_in_bytes
  uint32_t pids_max = 0;      // pids.max
  uint32_t cpu_percent = 0;   // quota in percent of one CPU (150 = 1.5 CPUs); cpu.max / cfs_quota_us
  uint32_t cpu_weight = 0;    // relative share 1..10000 (cgroup v2 cpu.weight; mapped to v1 cpu.shares)
};

struct Rlimit {
  int resource = 0;  // RLIMIT_NOFILE, RLIMIT_CORE, ...
  rlim_t soft = 0;
  rlim_t hard = 0;
};

// The worker's root filesystem.
struct RootfsSpec {
  // A directory to become "/", e.g. an OCI bundle's rootfs. Empty: the default view, a fresh tmpfs
  // holding read-only binds of the host's /usr, /bin, /sbin, /lib, /lib64 and /etc.
  std::string path;
  bool read_only = true;
  // Directory on the host where the new root is assembled inside the worker's private mount
  // namespace (the host never sees those mounts). Created once by the supervisor; must exist.
  std::string staging_dir;
};

struct SandboxSpec {
  std::string name;  // worker id: hostname, log and error context
  std::vector<std::string> argv;  // argv[0] is resolved against the worker's PATH if not absolute
  std::vector<std::string> env;   // "KEY=value"
  std::string cwd = "/";

  // -1: the worker gets namespaces of its own. Otherwise a pidfd of a live process (a tenant's
  // namespace holder, plume/fwp/tenant_namespaces.h) whose user, pid, net, ipc and uts
  // namespaces the worker joins instead; it still gets a mount and a cgroup namespace of its own
  // (its root), keeps the holder's hostname and loopback, and uid_map/gid_map are ignored (the
  // holder's user namespace has its maps). The spawn takes one more fork: joining a pid namespace
  // only places children in it.
  int join_namespaces_of = -1;

  // User namespace: the tenant's id range. Root in the worker is nobody outside it.
  IdMap uid_map;
  IdMap gid_map;
  uint32_t uid = 0;  // uid/gid the worker runs as, inside the namespace
  uint32_t gid = 0;

  RootfsSpec rootfs;

  // Absolute cgroup directories the worker is placed in before it runs (one per v1 controller
  // hierarchy, one in total on v2). Filled from CgroupManager::procs_files().
  std::vector<std::string> cgroup_procs_files;
  // v2 only: an O_PATH|O_DIRECTORY fd of the worker's cgroup for CLONE_INTO_CGROUP; -1 otherwise.
  int cgroup_dir_fd = -1;

  std::vector<Rlimit> rlimits;

  // The precompiled seccomp filter loaded as the last step before execve. Must not be null.
  const CompiledFilter* seccomp = nullptr;

  // File descriptors granted to the worker, in order: granted_fds[i] becomes fd i in the worker.
  // Usually {stdin, stdout, stderr}. Every other fd is closed before execve.
  std::vector<int> granted_fds;
};

}  // namespace plume::fwp
