// The exec-mode containment pipeline: one ordered list of named steps that turns a SandboxSpec
// into a running, isolated process. A failing step is reported by name, with its errno.
//
//   clone3(user, pid, mount, ipc, uts, net namespaces; pidfd)
//   → [parent] uid/gid maps, cgroup attach, release → [child] cgroup namespace, ids (capabilities
//   kept until dropped below), parent-death signal, loopback up, hostname
//   → rootfs (private mounts, pivot_root, old root detached) → rlimits → capabilities dropped
//   → no_new_privs → close fds but the granted ones → seccomp → execve
// Fds are closed before seccomp so that a filter only has to allow execve, write and exit_group
// after it is loaded (a tenant's OCI profile need not allow close_range, dup2 or fcntl).
//
// The worker is pid 1 of its own pid namespace (like crun or docker without --init): it receives
// only the signals it installed a handler for, plus SIGKILL (and SIGSTOP). It dies with SIGKILL when
// its parent thread exits (PR_SET_PDEATHSIG): the thread that spawned it, or, through a spawn
// helper (spawn_service.h), the thread that started the helper. Spawn from a long-lived thread.
#pragma once

#include <sys/resource.h>
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "plume/base/result.h"
#include "plume/base/unique_fd.h"
#include "plume/fwp/sandbox_spec.h"

namespace plume::fwp {

enum class Step : uint8_t {
  clone,
  id_maps,
  cgroup_attach,
  sync,
  cgroup_namespace,
  set_ids,
  loopback,
  hostname,
  rootfs,
  rlimits,
  capabilities,
  no_new_privs,
  seccomp,
  close_fds,
  execve,
  signals,  // the signal mask and ignored signals inherited from the supervisor are reset
  join_namespaces,  // SandboxSpec::join_namespaces_of: setns into another process's namespaces
};
const char* step_name(Step step);

struct SpawnError {
  Step step = Step::clone;
  int err = 0;             // errno of the failing call
  std::string detail;      // the call and object, e.g. "pivot_root /run/plume/root"
  std::string message() const;  // "rootfs: pivot_root /run/plume/root: Operation not permitted"
};

// A started worker. The pid is in the supervisor's pid namespace.
struct Process {
  pid_t pid = -1;
  UniqueFd pidfd;      // readable (POLLIN) once the process has exited
  UniqueFd status_fd;  // exec-status pipe: EOF = execve succeeded; a record = a step failed
  // Write end of the release pipe. Held until the exec status is known: the child, once its
  // parent-death signal is armed, checks this pipe for POLLHUP to learn whether the parent died
  // before that. Close it (or drop the Process) only after read_exec_status has answered.
  UniqueFd sync_fd;
};

// Starts the pipeline and returns as soon as the child has been released to run its steps; the
// caller learns the outcome from status_fd (see read_exec_status). Fails here only for steps run in
// the parent (clone, id_maps, cgroup_attach, sync).
Result<Process, SpawnError> spawn(const SandboxSpec& spec);

// Reads the exec-status pipe once it is readable: nullopt means execve succeeded (EOF); a value is
// the step that failed in the child. Non-blocking callers should poll status_fd for POLLIN first.
// EOF also results if the child was killed before it could report (e.g. by SIGKILL): reap() then
// says so. After a failure the child has exited with 127; the caller still reaps it.
std::optional<SpawnError> read_exec_status(int status_fd);

// Convenience for tests and benchmarks: spawn and block until execve succeeded or a step failed.
Result<Process, SpawnError> spawn_and_wait_exec(const SandboxSpec& spec);
// The waiting half of it, for a process started some other way (SpawnService::spawn): a step
// that failed in the child is returned as the error, and the child reaped.
Result<Process, SpawnError> wait_for_exec(Result<Process, SpawnError> proc);

namespace detail {
// Where spawn_as_sibling writes each pid as soon as there is one (the child it clones, then a
// joining spawn's worker, written by that child), with __atomic stores: shared memory its parent
// reads should the helper die before answering (spawn_helper.h).
struct SiblingPids {
  int child = 0;
  int worker = 0;
};
// spawn(), for the spawn helper (spawn_service.h): the worker is the caller's parent's child
// (CLONE_PARENT), and so is every child it had to give up on, or a joining spawn's first child:
// their pidfds go to `to_reap`, for that parent to wait for. `released` says whether the child
// was released; if not, whoever ends up holding sync_fd releases it (release_child).
Result<Process, SpawnError> spawn_as_sibling(const SandboxSpec& spec, std::vector<UniqueFd>& to_reap,
                                             bool& released, SiblingPids* written);
// Lets a spawned child past its wait for the parent-side steps (one byte on the release pipe).
std::optional<SpawnError> release_child(int sync_fd);
}  // namespace detail

// How a process ended.
struct ExitStatus {
  bool exited = false;  // true: exit(code); false: killed by `signal`
  int code = 0;
  int signal = 0;
  bool core_dumped = false;
  struct rusage usage {};
};
// Reaps an exited process through its pidfd (waitid P_PIDFD). Call once pidfd is readable;
// with `block` it waits.
Result<ExitStatus, SysError> reap(int pidfd, bool block = false);
// Whether `fd` is readable or hung up now, without waiting: a pidfd once its process has exited,
// and also a pipe (an exec-status pipe's record or end of file). For callbacks of a level-triggered
// loop, which must not block on a spurious wake-up.
bool pidfd_readable(int fd);

}  // namespace plume::fwp
