// Child-side privilege steps: the ids the worker runs as, then the loss of every capability,
// no_new_privs and the seccomp filter. System calls only: these run between clone3 and execve.
#pragma once

#include <linux/filter.h>

#include <cstdint>

#include "exec_status.h"

namespace plume::fwp::detail {

// setgroups(0), setresgid, setresuid to ids inside the user namespace. Capabilities survive the
// change (SECBIT_NO_SETUID_FIXUP) because the mount, hostname and loopback steps still need them;
// the capabilities step drops them all.
StepFailure set_ids(uint32_t uid, uint32_t gid);

// Locks the securebits (no root privilege on exec, no fixups, no ambient raise), empties the
// bounding and ambient sets, then effective, permitted and inheritable (raw capset: no libcap
// allocation after clone).
StepFailure drop_capabilities(int cap_last_cap);

StepFailure set_no_new_privs();

// Loads a precompiled classic-BPF program (prepared by the parent).
StepFailure load_seccomp(const sock_fprog& prog);

// Parent side: /proc/sys/kernel/cap_last_cap, read once per process.
int cap_last_cap();

}  // namespace plume::fwp::detail
