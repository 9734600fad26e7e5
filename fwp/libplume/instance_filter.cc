// Hand-written classic BPF: see instance_filter.h for what it refuses and why.
#include "instance_filter.h"

#include <linux/audit.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>

namespace plume::libplume {
namespace {

constexpr uint32_t kArgLow0 = offsetof(seccomp_data, args[0]);  // little endian: low half first

sock_filter stmt(uint16_t code, uint32_t k) { return sock_filter{code, 0, 0, k}; }
sock_filter jump(uint16_t code, uint32_t k, uint8_t jt, uint8_t jf) {
  return sock_filter{code, jt, jf, k};
}

}  // namespace

size_t build_instance_filter(pid_t self, sock_filter* out) {
  // Syscalls whose first argument must be the instance itself.
  static constexpr uint32_t kSelfOnly[] = {SYS_kill, SYS_tkill, SYS_tgkill, SYS_rt_sigqueueinfo,
                                           SYS_rt_tgsigqueueinfo, SYS_pidfd_open};
  // Syscalls refused outright.
  static constexpr uint32_t kDenied[] = {SYS_io_uring_setup, SYS_io_uring_register, SYS_ptrace,
                                         SYS_process_vm_readv, SYS_process_vm_writev, SYS_kcmp,
                                         SYS_pidfd_getfd};
  constexpr uint8_t nself = sizeof kSelfOnly / sizeof kSelfOnly[0];
  constexpr uint8_t ndeny = sizeof kDenied / sizeof kDenied[0];
  size_t n = 0;
  // Another architecture's numbers mean other calls: the image's filter already refuses them,
  // this one only has to not misread them.
  out[n++] = stmt(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch));
  out[n++] = jump(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0);
  out[n++] = stmt(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM);
  out[n++] = stmt(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr));
  // Layout after this point: [self-only checks][deny checks][ALLOW][check arg0][DENY]
  // Distances are counted from the instruction after the jump.
  const uint8_t checks = nself + ndeny;
  for (uint8_t i = 0; i < nself; ++i) {
    const uint8_t to_arg = static_cast<uint8_t>(checks - i - 1 + 1);  // skip rest + ALLOW
    out[n++] = jump(BPF_JMP | BPF_JEQ | BPF_K, kSelfOnly[i], to_arg, 0);
  }
  for (uint8_t i = 0; i < ndeny; ++i) {
    const uint8_t to_deny = static_cast<uint8_t>(ndeny - i - 1 + 1 + 2);  // rest + ALLOW + 2 arg insns
    out[n++] = jump(BPF_JMP | BPF_JEQ | BPF_K, kDenied[i], to_deny, 0);
  }
  out[n++] = stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
  out[n++] = stmt(BPF_LD | BPF_W | BPF_ABS, kArgLow0);  // pid_t is an int: the low half is it
  out[n++] = jump(BPF_JMP | BPF_JEQ | BPF_K, static_cast<uint32_t>(self), 1, 0);
  out[n++] = stmt(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM);
  out[n++] = stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
  return n;
}

int load_instance_filter(pid_t self) {
  sock_filter insns[kMaxInstanceFilter];
  const size_t n = build_instance_filter(self, insns);
  sock_fprog prog{static_cast<unsigned short>(n), insns};
  if (::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) != 0) return errno;
  return 0;
}

}  // namespace plume::libplume
