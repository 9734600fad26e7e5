// What /proc/self/fdinfo says about a pidfd: the process's pid in our pid namespace and its pid
// in each nested namespace down to its own. How the controller learns the pid of a process it is
// not the parent of, from a pidfd a template passed it.
#pragma once

#include <sys/types.h>

#include <vector>

#include "plume/base/sys_error.h"

namespace plume::fwp {

struct PidfdInfo {
  pid_t pid = -1;             // "Pid:": in our namespace; -1 once the process has exited
  std::vector<pid_t> ns_pids; // "NSpid:": ours first, its own namespace's last
};

// Fails with EBADF/EINVAL when fd is not a pidfd.
SysResult<PidfdInfo> pidfd_info(int fd);

// The parent of `pid` (in our namespace) from /proc/PID/stat; -1 if it is gone, 0 while it is
// being released (reaped: its parent link is already cut). A template or
// instance claimed by a pidfd must be the keeper's or the template's own child: in a tenant's
// shared pid namespace, other images' processes are just as "of the namespace".
pid_t parent_pid(pid_t pid);

// Parses an fdinfo text (for tests).
SysResult<PidfdInfo> parse_pidfd_info(const char* text);

}  // namespace plume::fwp
