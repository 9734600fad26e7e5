// The child half of the containment pipeline: one ordered list of named steps, run between clone3
// and execve. Everything it needs is prepared by the parent in a ChildPlan before clone3, because
// the child of a (possibly multi-threaded) supervisor may only make system calls: no allocation,
// no locks, no glibc wrappers that touch other threads.
#pragma once

#include <linux/filter.h>

#include <cstddef>
#include <cstdint>

#include "plume/fwp/sandbox_spec.h"
#include "rootfs.h"

namespace plume::fwp::detail {

struct ChildPlan {
  int status_fd = -1;        // write end of the exec-status pipe (O_CLOEXEC)
  int status_read_fd = -1;   // parent's end, closed in the child
  int sync_fd = -1;          // read end of the release pipe
  int sync_write_fd = -1;    // parent's end, closed in the child (so POLLHUP means parent death)

  // Joining a namespace holder's namespaces (SandboxSpec::join_namespaces_of): its pidfd, and the
  // pipe on which the first child reports the pid of the second (the worker), then exits.
  int join_pidfd = -1;
  int pid_report_fd = -1;       // write end
  int pid_report_read_fd = -1;  // parent's end, closed in the child
  // In the spawn helper: where the first child also writes the worker's pid, at once, so that the
  // helper's caller can find the worker should the helper die before answering (spawn_helper.h).
  int* worker_pid_slot = nullptr;

  uint32_t uid = 0;
  uint32_t gid = 0;
  const char* hostname = nullptr;
  size_t hostname_len = 0;

  RootfsPlan rootfs;
  const char* cwd = "/";

  const Rlimit* rlimits = nullptr;
  size_t n_rlimits = 0;

  int cap_last_cap = 0;
  sock_fprog seccomp{};

  const int* granted_fds = nullptr;
  int* scratch_fds = nullptr;  // n_granted ints the child may write
  size_t n_granted = 0;
  int fd_floor = 0;  // above every granted fd and every target number

  char* const* argv = nullptr;
  char* const* envp = nullptr;
  const char* path_list = nullptr;  // PATH for argv[0] without '/'
  char* exec_buf = nullptr;         // scratch for "<dir>/<argv0>"
  size_t exec_buf_size = 0;
};

// Runs every child step in order and execs; on failure reports the step and _exit(127)s.
[[noreturn]] void run_child(ChildPlan& plan) noexcept;

}  // namespace plume::fwp::detail
