// The worker's filesystem view: assembled on a staging directory inside the worker's private mount
// namespace, then entered with pivot_root. The parent prepares a plan (it may allocate); the child
// carries it out with system calls only.
//
// The child resolves paths with the tenant's host uid (root inside a user namespace has no power
// over host-owned files): the staging directory and a tenant rootfs path must be searchable by
// that uid (e.g. mode 0755 up the tree).
#pragma once

#include <cstddef>
#include <string>

#include "exec_status.h"
#include "plume/fwp/sandbox_spec.h"

namespace plume::fwp::detail {

// One host directory of the default view: bound read-only, or recreated as a symlink when the host
// has a symlink there (merged-/usr systems: /bin -> usr/bin).
struct HostDir {
  const char* name = nullptr;         // relative to the new root: "usr"
  const char* source = nullptr;       // on the host: "/usr"
  const char* link_target = nullptr;  // non-null: make a symlink with this target instead
};

inline constexpr size_t kMaxHostDirs = 6;

struct RootfsPlan {
  const char* staging = nullptr;
  const char* path = nullptr;  // null: the default view
  bool read_only = true;
  HostDir host_dirs[kMaxHostDirs];
  size_t n_host_dirs = 0;
};

// Owns the strings a RootfsPlan points into (symlink targets read on the host).
struct RootfsStorage {
  std::string link_targets[kMaxHostDirs];
};

// Parent side: which host directories exist and which are symlinks. Never fails; a missing
// directory is simply left out of the view.
void prepare_rootfs(const RootfsSpec& spec, RootfsPlan& plan, RootfsStorage& storage);

// Child side: makes every mount private, builds the view on plan.staging, pivots into it, drops
// the old root and changes to cwd.
StepFailure enter_rootfs(const RootfsPlan& plan, const char* cwd);

}  // namespace plume::fwp::detail
