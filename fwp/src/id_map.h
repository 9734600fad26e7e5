// Parent-side steps run while the child waits for its release byte: its uid/gid maps and its
// cgroup membership (cgroup v1, or v2 without CLONE_INTO_CGROUP).
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "plume/fwp/sandbox_spec.h"
#include "plume/fwp/spawner.h"

namespace plume::fwp::detail {

// Writes /proc/<pid>/uid_map and gid_map. setgroups is left "allow": the supervisor holds
// CAP_SETGID, so the kernel does not require "deny", and the child needs setgroups(0, NULL) to
// shed the supervisor's supplementary groups (which would otherwise still grant access to host
// files). The worker cannot call setgroups itself: it has no CAP_SETGID once it runs.
std::optional<SpawnError> write_id_maps(pid_t pid, const IdMap& uid_map, const IdMap& gid_map);

// Writes pid into every cgroup.procs file.
std::optional<SpawnError> attach_cgroups(pid_t pid, const std::vector<std::string>& procs_files);

}  // namespace plume::fwp::detail
