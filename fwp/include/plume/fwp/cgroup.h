// CgroupManager: creates, limits, meters and removes Plume's cgroups, on cgroup v2 where the host
// has it and on v1 otherwise. Layout: <root>/<parent>/<tenant>/<worker>; the tenant directory holds
// the tenant's limits, the worker leaf its own limits and its metering.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "plume/base/sys_error.h"
#include "plume/base/unique_fd.h"
#include "plume/fwp/sandbox_spec.h"

namespace plume::fwp {

enum class CgroupVersion { v1, v2 };

struct CgroupStats {
  uint64_t cpu_usage_ns = 0;       // cpuacct.usage / cpu.stat usage_usec
  uint64_t memory_peak_bytes = 0;  // memory.max_usage_in_bytes / memory.peak
  uint64_t memory_current_bytes = 0;
  uint64_t oom_kills = 0;          // memory.oom_control oom_kill / memory.events oom_kill
  uint64_t pids_max_hits = 0;      // pids.events max
  uint64_t pids_current = 0;
};

class CgroupManager {
 public:
  // Detects the host's layout under mount_root (normally /sys/fs/cgroup): v2 when mount_root is a
  // cgroup2 mount with the memory, pids and cpu controllers available, v1 when those controllers
  // are mounted as v1 hierarchies beneath it. `parent` names Plume's own subtree, e.g. "plume".
  static SysResult<CgroupManager> open(std::string mount_root, std::string parent);

  CgroupVersion version() const { return version_; }
  const std::string& parent() const { return parent_; }

  // Creates <parent> (and enables controllers on v2). Idempotent.
  SysResult<void> create_root();
  // Creates <parent>/<relative> with the given limits; relative is "tenant" or "tenant/worker".
  SysResult<void> create(const std::string& relative, const CgroupLimits& limits);
  // Writes `limits` to the existing group <parent>/<relative> (a zero leaves that limit as it is).
  SysResult<void> set_limits(const std::string& relative, const CgroupLimits& limits) const;
  // The files a child's pid must be written to (cgroup.procs, one per v1 hierarchy).
  std::vector<std::string> procs_files(const std::string& relative) const;
  // v2: an O_PATH directory fd for clone3's CLONE_INTO_CGROUP. v1: an invalid fd.
  SysResult<UniqueFd> open_dir_for_clone(const std::string& relative) const;
  SysResult<void> attach(const std::string& relative, pid_t pid) const;
  SysResult<CgroupStats> stats(const std::string& relative) const;
  // Pids of every process in the group and below it.
  std::vector<pid_t> processes(const std::string& relative) const;
  // SIGKILLs everything in the group (cgroup.kill on v2 where present) and waits, bounded, for it
  // to empty. Returns the number of processes signalled.
  SysResult<size_t> kill_all(const std::string& relative) const;
  // Removes <parent>/<relative> and everything below it (depth first). Missing is not an error.
  SysResult<void> remove(const std::string& relative) const;
  // Kills and removes whatever a previous, crashed supervisor left under <parent>.
  SysResult<size_t> cleanup_stale();
  // Every directory of <parent>/<relative> across hierarchies (for tests and diagnostics).
  std::vector<std::string> directories(const std::string& relative) const;

 private:
  CgroupManager() = default;
  // One directory root per distinct hierarchy (v1 co-mounts share one), or the v2 mount.
  std::vector<std::string> hierarchy_roots() const;
  std::string dir_in(const std::string& root, const std::string& relative) const;
  // The group's directory in the hierarchy that carries `controller`; nullopt when not mounted.
  std::optional<std::string> controller_dir(const std::string& controller,
                                            const std::string& relative) const;
  SysResult<void> apply_limits(const std::string& relative, const CgroupLimits& limits) const;
  CgroupVersion version_ = CgroupVersion::v1;
  std::string mount_root_;
  std::string parent_;
  // v1: controller name → hierarchy mount point ("memory" → /sys/fs/cgroup/memory).
  std::vector<std::pair<std::string, std::string>> v1_hierarchies_;
};

}  // namespace plume::fwp
