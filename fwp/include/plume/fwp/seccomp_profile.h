// Seccomp profiles, compiled once per image (libseccomp → classic BPF) and loaded by each worker
// with one prctl: building a filter costs ~760 µs here, loading a compiled one ~150 µs.
#pragma once

#include <linux/filter.h>

#include <string>
#include <string_view>
#include <vector>

#include "plume/base/sys_error.h"

namespace plume::fwp {

struct CompiledFilter {
  std::vector<sock_filter> program;
  std::string source;  // "default", "default+io_uring" or the OCI profile's path: for logs
  // What compilation skipped and why, e.g. "unknown syscall 'foo' skipped" (runc skips unknown
  // names rather than failing, so one profile serves several kernels). For logs and tests.
  std::vector<std::string> warnings;
};

struct SeccompOptions {
  bool allow_io_uring = false;  // io_uring_setup/enter/register are refused unless the image asks
};

// The built-in allowlist: what ordinary programs need, minus everything that reaches outside the
// sandbox (mount, ptrace, unshare, setns, kexec_load, bpf, keyctl, ...). Denied calls fail with EPERM.
SysResult<CompiledFilter> compile_default_profile(const SeccompOptions& opts);

// A profile in the OCI runtime-spec seccomp JSON format ("defaultAction", "architectures",
// "syscalls": [{"names": [...], "action": ..., "errnoRet"?, "args"?}]). io_uring is still
// refused unless opts.allow_io_uring, whatever the profile says.
SysResult<CompiledFilter> compile_oci_profile(std::string_view json_text, const SeccompOptions& opts,
                                              std::string source_name);

// Loads `filter` into the calling thread with prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER). Safe
// between fork and execve: no allocation on success, and the error's strings fit the small-string
// buffer. The caller must hold CAP_SYS_ADMIN or have set PR_SET_NO_NEW_PRIVS first (the
// containment pipeline does that as its own step).
SysResult<void> load_filter(const CompiledFilter& filter) noexcept;

// The names the built-in profile allows unconditionally, and those it must always refuse (for
// tests, docs and reviews). clone, clone3, socket and personality carry argument rules instead.
const std::vector<std::string_view>& default_allowed_syscalls();
const std::vector<std::string_view>& default_denied_syscalls();

}  // namespace plume::fwp
