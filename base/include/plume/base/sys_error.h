// SysError: a failed system call, with the call, errno and the object it concerned, so every
// error message says exactly what went wrong ("mkdir /sys/fs/cgroup/pids/plume: Permission denied").
#pragma once

#include <string>

#include "plume/base/result.h"

namespace plume {

struct SysError {
  std::string call;    // "mkdir", "clone3", "seccomp_load" ...
  int err = 0;         // errno at the time of failure (0 when not a system call)
  std::string object;  // the path, pid or name the call concerned

  std::string message() const;  // "call object: strerror(err)"
};

// The errno of the last call, captured at the call site.
SysError sys_error(std::string call, std::string object = {});
// An error that is not an errno (bad input, protocol violation).
SysError plain_error(std::string call, std::string detail);

template <class T>
using SysResult = Result<T, SysError>;

}  // namespace plume
