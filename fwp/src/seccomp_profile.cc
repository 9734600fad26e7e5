// The built-in seccomp profile (an allowlist modelled on Docker's/containerd's default, without
// what reaches outside the sandbox) and the loader. OCI JSON profiles: seccomp_oci.cc.
#include "plume/fwp/seccomp_profile.h"

#include <linux/seccomp.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/socket.h>

#include <cerrno>

#include "seccomp_build.h"

namespace plume::fwp {
namespace {

// x86_64 names (libseccomp resolves them for the native architecture). Anything not listed and
// not given an argument rule below fails with EPERM.
const std::vector<std::string_view> kAllowed = {
    // files and descriptors
    "read", "write", "readv", "writev", "pread64", "pwrite64", "preadv", "pwritev", "preadv2",
    "pwritev2", "open", "openat", "openat2", "creat", "close", "close_range", "lseek", "dup",
    "dup2", "dup3", "fcntl", "ioctl", "flock", "fsync", "fdatasync", "sync", "syncfs",
    "sync_file_range", "truncate", "ftruncate", "fallocate", "fadvise64", "readahead",
    "sendfile", "splice", "tee", "vmsplice", "copy_file_range", "cachestat",
    // metadata and directories
    "stat", "fstat", "lstat", "newfstatat", "statx", "statfs", "fstatfs", "access", "faccessat",
    "faccessat2", "getdents", "getdents64", "getcwd", "chdir", "fchdir", "mkdir", "mkdirat",
    "rmdir", "rename", "renameat", "renameat2", "link", "linkat", "unlink", "unlinkat",
    "symlink", "symlinkat", "readlink", "readlinkat", "chmod", "fchmod", "fchmodat", "fchmodat2",
    "chown", "fchown", "lchown", "fchownat", "umask", "utime", "utimes", "utimensat",
    "futimesat", "mknod", "mknodat", "getxattr", "lgetxattr", "fgetxattr", "setxattr",
    "lsetxattr", "fsetxattr", "listxattr", "llistxattr", "flistxattr", "removexattr",
    "lremovexattr", "fremovexattr", "inotify_init", "inotify_init1", "inotify_add_watch",
    "inotify_rm_watch",
    // memory
    "brk", "mmap", "munmap", "mremap", "mprotect", "madvise", "mincore", "msync", "mlock",
    "mlock2", "munlock", "mlockall", "munlockall", "membarrier", "memfd_create", "memfd_secret",
    "remap_file_pages", "pkey_alloc", "pkey_free", "pkey_mprotect", "map_shadow_stack",
    // processes (clone and clone3 have argument rules)
    "fork", "vfork", "execve", "execveat", "exit", "exit_group", "wait4", "waitid", "kill",
    "tkill", "tgkill", "getpid", "getppid", "gettid", "getpgid", "setpgid", "getpgrp", "getsid",
    "setsid", "set_tid_address", "set_robust_list", "get_robust_list", "rseq", "arch_prctl",
    "get_thread_area", "set_thread_area", "prctl", "seccomp", "landlock_create_ruleset",
    "landlock_add_rule", "landlock_restrict_self", "pidfd_open", "pidfd_send_signal",
    "process_mrelease", "restart_syscall", "getrusage", "getrlimit", "setrlimit", "prlimit64",
    "getpriority", "setpriority", "ioprio_get", "ioprio_set", "sched_yield", "sched_getaffinity",
    "sched_setaffinity", "sched_getattr", "sched_setattr", "sched_getparam", "sched_setparam",
    "sched_getscheduler", "sched_setscheduler", "sched_get_priority_max",
    "sched_get_priority_min", "sched_rr_get_interval", "getcpu", "uname", "sysinfo", "times",
    "getrandom",
    // identity: harmless without capabilities; inside the tenant's user namespace
    "getuid", "geteuid", "getgid", "getegid", "getresuid", "getresgid", "getgroups", "setuid",
    "setgid", "setreuid", "setregid", "setresuid", "setresgid", "setgroups", "setfsuid",
    "setfsgid", "capget", "capset",
    // signals
    "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "rt_sigpending", "rt_sigsuspend",
    "rt_sigtimedwait", "rt_sigqueueinfo", "rt_tgsigqueueinfo", "sigaltstack", "signalfd",
    "signalfd4", "pause", "alarm", "getitimer", "setitimer",
    // time (reading and sleeping only)
    "time", "gettimeofday", "clock_gettime", "clock_getres", "clock_nanosleep", "nanosleep",
    "timer_create", "timer_delete", "timer_gettime", "timer_settime", "timer_getoverrun",
    "timerfd_create", "timerfd_gettime", "timerfd_settime",
    // waiting and events
    "futex", "futex_waitv", "futex_wake", "futex_wait", "futex_requeue", "poll", "ppoll",
    "select", "pselect6", "epoll_create", "epoll_create1", "epoll_ctl", "epoll_wait",
    "epoll_pwait", "epoll_pwait2", "eventfd", "eventfd2", "pipe", "pipe2",
    // asynchronous I/O (io_uring has its own switch)
    "io_setup", "io_destroy", "io_submit", "io_cancel", "io_getevents", "io_pgetevents",
    // sockets (socket itself has a family rule)
    "socketpair", "bind", "listen", "accept", "accept4", "connect", "shutdown", "getsockname",
    "getpeername", "getsockopt", "setsockopt", "sendto", "recvfrom", "sendmsg", "recvmsg",
    "sendmmsg", "recvmmsg",
    // System V and POSIX IPC: scoped by the tenant's IPC namespace
    "shmget", "shmat", "shmdt", "shmctl", "semget", "semop", "semtimedop", "semctl", "msgget",
    "msgsnd", "msgrcv", "msgctl", "mq_open", "mq_unlink", "mq_timedsend", "mq_timedreceive",
    "mq_notify", "mq_getsetattr",
};

// Never allowed: each reaches outside the sandbox or into the host kernel's attack surface.
const std::vector<std::string_view> kDenied = {
    "mount", "umount2", "pivot_root", "chroot", "open_tree", "move_mount", "fsopen", "fsconfig",
    "fsmount", "fspick", "mount_setattr", "ptrace", "process_vm_readv", "process_vm_writev",
    "kcmp", "pidfd_getfd", "unshare", "setns", "kexec_load", "kexec_file_load", "bpf",
    "perf_event_open", "keyctl", "add_key", "request_key", "init_module", "finit_module",
    "delete_module", "reboot", "swapon", "swapoff", "acct", "settimeofday", "clock_settime",
    "clock_adjtime", "adjtimex", "open_by_handle_at", "name_to_handle_at", "userfaultfd",
    "quotactl", "quotactl_fd", "lookup_dcookie", "syslog", "vhangup", "iopl", "ioperm",
    "modify_ldt", "sethostname", "setdomainname", "fanotify_init", "uselib", "_sysctl",
    "io_uring_setup", "io_uring_enter", "io_uring_register",
};

// Any namespace flag: clone may make threads and processes, never new namespaces.
constexpr uint64_t kCloneNamespaceFlags = CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC |
                                          CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET |
                                          CLONE_NEWCGROUP;
constexpr uint64_t kSockTypeMask = 0xf;  // SOCK_NONBLOCK and SOCK_CLOEXEC live above it

seccomp_build::Plan default_plan(const SeccompOptions& opts) {
  using seccomp_build::Rule;
  seccomp_build::Plan plan;
  plan.default_action = SCMP_ACT_ERRNO(EPERM);
  for (std::string_view name : kAllowed) plan.rules.push_back(Rule{std::string(name), SCMP_ACT_ALLOW, {}});

  plan.rules.push_back(
      Rule{"clone", SCMP_ACT_ALLOW, {SCMP_A0(SCMP_CMP_MASKED_EQ, kCloneNamespaceFlags, 0)}});
  // clone3 passes its flags in memory, out of a filter's reach. ENOSYS makes glibc fall back to
  // clone, whose flags the rule above sees (Docker does the same).
  plan.rules.push_back(Rule{"clone3", SCMP_ACT_ERRNO(ENOSYS), {}});

  // Local and IP sockets only; IP sockets only stream, datagram and seqpacket (no SOCK_RAW,
  // SOCK_PACKET). AF_PACKET, AF_NETLINK and the rest fall to the default EPERM.
  plan.rules.push_back(Rule{"socket", SCMP_ACT_ALLOW, {SCMP_A0(SCMP_CMP_EQ, AF_UNIX)}});
  for (int family : {AF_INET, AF_INET6}) {
    for (int type : {SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET}) {
      plan.rules.push_back(Rule{"socket",
                                SCMP_ACT_ALLOW,
                                {SCMP_A0(SCMP_CMP_EQ, static_cast<scmp_datum_t>(family)),
                                 SCMP_A1(SCMP_CMP_MASKED_EQ, kSockTypeMask,
                                         static_cast<scmp_datum_t>(type))}});
    }
  }

  // personality: PER_LINUX, PER_LINUX32, UNAME26 and their mix, and 0xffffffff (query). Not
  // ADDR_NO_RANDOMIZE and friends. The kernel reads an unsigned int, so only the low half counts.
  for (scmp_datum_t persona : {0x0ULL, 0x8ULL, 0x20000ULL, 0x20008ULL, 0xffffffffULL}) {
    plan.rules.push_back(
        Rule{"personality", SCMP_ACT_ALLOW, {SCMP_A0(SCMP_CMP_MASKED_EQ, 0xffffffffULL, persona)}});
  }

  if (opts.allow_io_uring) {
    for (const char* name : seccomp_build::kIoUringSyscalls)
      plan.rules.push_back(Rule{name, SCMP_ACT_ALLOW, {}});
  }
  return plan;
}

}  // namespace

const std::vector<std::string_view>& default_allowed_syscalls() { return kAllowed; }
const std::vector<std::string_view>& default_denied_syscalls() { return kDenied; }

SysResult<CompiledFilter> compile_default_profile(const SeccompOptions& opts) {
  return seccomp_build::compile(default_plan(opts),
                                opts.allow_io_uring ? "default+io_uring" : "default");
}

SysResult<void> load_filter(const CompiledFilter& filter) noexcept {
  if (filter.program.empty() || filter.program.size() > BPF_MAXINSNS) {
    return fail(SysError{"prctl", EINVAL, "PR_SET_SECCOMP"});
  }
  sock_fprog prog{};
  prog.len = static_cast<unsigned short>(filter.program.size());
  // The kernel copies the program; it never writes through this pointer.
  prog.filter = const_cast<sock_filter*>(filter.program.data());
  if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) != 0)
    return fail(SysError{"prctl", errno, "PR_SET_SECCOMP"});
  return {};
}

}  // namespace plume::fwp
