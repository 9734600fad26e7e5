// Child-side namespace steps: release by the parent, cgroup namespace, parent-death signal,
// loopback and hostname. System calls only.
#pragma once

#include <cstddef>

#include "exec_status.h"

namespace plume::fwp::detail {

// Blocks until the parent writes the release byte (after uid/gid maps and cgroup attach).
StepFailure wait_for_release(int sync_fd);

// setns into the user, pid, net, ipc and uts namespaces of the process behind `pidfd`, then a
// mount namespace of our own (owned by the joined user namespace: ours to mount in). The pid
// namespace applies to our children only: the caller forks next (join_and_fork in pipeline.cc).
StepFailure join_namespaces(int pidfd);

// A cgroup namespace rooted at the worker's own cgroup (the parent attached it before release).
StepFailure enter_cgroup_namespace();

// PR_SET_PDEATHSIG(SIGKILL), armed after the id change (which clears it), then a check that the
// parent did not die before it was armed: the parent holds the sync pipe's write end until the exec
// status is known, so POLLHUP on our read end means it is gone.
StepFailure arm_parent_death(int sync_fd);

// The new network namespace has only "lo", and it starts down.
StepFailure bring_up_loopback();

StepFailure set_hostname(const char* name, size_t len);

}  // namespace plume::fwp::detail
