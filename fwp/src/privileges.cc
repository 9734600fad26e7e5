#include "privileges.h"

#include <fcntl.h>
#include <linux/capability.h>
#include <linux/securebits.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>

namespace plume::fwp::detail {

StepFailure set_ids(uint32_t uid, uint32_t gid) {
  if (::prctl(PR_SET_SECUREBITS, SECBIT_NO_SETUID_FIXUP, 0, 0, 0) != 0) {
    return step_errno("prctl PR_SET_SECUREBITS", "SECBIT_NO_SETUID_FIXUP");
  }
  // Raw system calls: glibc's wrappers would try to change the ids of every thread the parent had,
  // and this child has only one.
  if (::syscall(SYS_setgroups, 0, nullptr) != 0) return step_errno("setgroups", "0 groups");
  if (::syscall(SYS_setresgid, gid, gid, gid) != 0) return step_errno("setresgid");
  if (::syscall(SYS_setresuid, uid, uid, uid) != 0) return step_errno("setresuid");
  return step_ok();
}

StepFailure drop_capabilities(int last_cap) {
  constexpr unsigned long kSecurebits =
      SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_NO_SETUID_FIXUP |
      SECBIT_NO_SETUID_FIXUP_LOCKED | SECBIT_KEEP_CAPS_LOCKED | SECBIT_NO_CAP_AMBIENT_RAISE |
      SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED;
  if (::prctl(PR_SET_SECUREBITS, kSecurebits, 0, 0, 0) != 0) {
    return step_errno("prctl PR_SET_SECUREBITS", "locked");
  }
  for (int cap = 0; cap <= last_cap; ++cap) {
    if (::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0) {
      return step_errno("prctl PR_CAPBSET_DROP");
    }
  }
  if (::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0) {
    return step_errno("prctl PR_CAP_AMBIENT_CLEAR_ALL");
  }
  __user_cap_header_struct header{};
  header.version = _LINUX_CAPABILITY_VERSION_3;
  header.pid = 0;
  __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
  if (::syscall(SYS_capset, &header, data) != 0) return step_errno("capset", "empty sets");
  return step_ok();
}

StepFailure set_no_new_privs() {
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return step_errno("prctl PR_SET_NO_NEW_PRIVS");
  return step_ok();
}

StepFailure load_seccomp(const sock_fprog& prog) {
  if (::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) != 0) {
    return step_errno("prctl PR_SET_SECCOMP");
  }
  return step_ok();
}

int cap_last_cap() {
  static const int value = [] {
    int last = CAP_LAST_CAP;
    const int fd = ::open("/proc/sys/kernel/cap_last_cap", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
      char buf[16] = {};
      if (::read(fd, buf, sizeof buf - 1) > 0) {
        const long v = std::strtol(buf, nullptr, 10);
        if (v > 0 && v < 64) last = static_cast<int>(v);
      }
      ::close(fd);
    }
    return last;
  }();
  return value;
}

}  // namespace plume::fwp::detail
