// The per-instance seccomp filter, stacked on the image's filter as an instance's last setup step.
// Classic BPF written by hand (libplume does not link libseccomp); it is a dozen instructions.
#pragma once

#include <linux/filter.h>
#include <sys/types.h>

#include <cstddef>

namespace plume::libplume {

// Instructions of the filter for process `self` (its pid as it sees it). Refused with EPERM:
//  - signals to anyone but itself: kill, tkill, tgkill, rt_sigqueueinfo, rt_tgsigqueueinfo and
//    pidfd_open with a pid other than `self` (so siblings and the template sharing its uid and
//    pid namespace are out of reach; pidfd_send_signal needs a pidfd, which it cannot get);
//  - io_uring_setup and io_uring_register (the instance keeps the one ring set up before);
//  - ptrace, process_vm_readv/writev, kcmp, pidfd_getfd (whatever the image's profile allows).
// Returns the number of instructions written into out (capacity kMaxInstanceFilter).
inline constexpr size_t kMaxInstanceFilter = 40;
size_t build_instance_filter(pid_t self, sock_filter* out);

// Loads it with prctl(PR_SET_SECCOMP). Returns 0 or an errno.
int load_instance_filter(pid_t self);

}  // namespace plume::libplume
