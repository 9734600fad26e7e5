// The one place that talks to libseccomp: a Plan (default action, architectures, rules) becomes
// a classic BPF program. The built-in profile and the OCI JSON parser both produce Plans.
#pragma once

#include <seccomp.h>

#include <cstdint>
#include <string>
#include <vector>

#include "plume/base/sys_error.h"
#include "plume/fwp/seccomp_profile.h"

namespace plume::fwp::seccomp_build {

struct Rule {
  std::string name;                // syscall name, resolved for every architecture of the plan
  uint32_t action = SCMP_ACT_ALLOW;
  std::vector<scmp_arg_cmp> args;  // all must hold (AND); at most one per argument index
};

struct Plan {
  uint32_t default_action = SCMP_ACT_ERRNO(1);
  std::vector<uint32_t> extra_arches;  // SCMP_ARCH_*; the native one is always present
  std::vector<Rule> rules;
  std::vector<std::string> warnings;  // carried into CompiledFilter::warnings
};

inline constexpr const char* kIoUringSyscalls[] = {"io_uring_setup", "io_uring_enter",
                                                    "io_uring_register"};

// Compiles with libseccomp and exports the BPF through a memfd (libseccomp 2.5 has no in-memory
// export). Names unknown to libseccomp, and rules whose action equals the default, are skipped;
// unknown names are recorded in warnings.
SysResult<CompiledFilter> compile(const Plan& plan, std::string source);

}  // namespace plume::fwp::seccomp_build
