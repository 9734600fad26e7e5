// The built-in seccomp profile, loaded for real in forked children: what must be refused is
// refused with EPERM, and ordinary programs (sh, busybox, coreutils, python3) still run.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/io_uring.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>

#include <algorithm>
#include <array>
#include <cstring>

#include "child.h"
#include "plume/fwp/seccomp_profile.h"

namespace plume::fwp {
namespace {

// One probed system call: its raw return value and errno.
struct Outcome {
  long ret = 0;
  int err = 0;
};

enum Probe : int {
  kMount,
  kUnshareUser,
  kPtraceTraceme,
  kKexecLoad,
  kBpf,
  kIoUringSetupBad,
  kIoUringSetup,
  kCloneNewUser,
  kClone3,
  kSocketPacket,
  kSocketNetlink,
  kSocketRawInet,
  kSocketInet,
  kSocketUnix,
  kPersonalityNoRandom,
  kPersonalityQuery,
  kNameToHandle,
  kSetns,
  kPerfEventOpen,
  kKeyctl,
  kGetpid,
  kOpenat,
  kFork,
  kProbeCount
};

Outcome probe(int which) {
  errno = 0;
  long r = -1;
  switch (which) {
    // Invalid arguments where the call would otherwise do harm as root: without the filter each
    // fails with ENOENT/EINVAL, so EPERM can only come from the filter.
    case kMount: r = ::syscall(SYS_mount, "none", "/nonexistent-plume-h1", "tmpfs", 0UL, nullptr); break;
    case kUnshareUser: r = ::syscall(SYS_unshare, CLONE_NEWUSER); break;
    case kPtraceTraceme: r = ::syscall(SYS_ptrace, PTRACE_TRACEME, 0, 0, 0); break;
    case kKexecLoad: r = ::syscall(SYS_kexec_load, 0UL, 0UL, nullptr, 0xdead0000UL); break;
    case kBpf: r = ::syscall(SYS_bpf, -1, nullptr, 0); break;
    case kIoUringSetupBad: {
      io_uring_params p{};
      r = ::syscall(SYS_io_uring_setup, 0, &p);  // zero entries: EINVAL
      break;
    }
    case kIoUringSetup: {
      io_uring_params p{};
      r = ::syscall(SYS_io_uring_setup, 4, &p);
      if (r >= 0) ::close(static_cast<int>(r));
      break;
    }
    case kCloneNewUser:
      r = ::syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
      if (r == 0) ::_exit(0);  // only if the filter failed to refuse it
      break;
    case kClone3: {
      std::array<uint64_t, 11> args{};  // struct clone_args, zeroed
      r = ::syscall(SYS_clone3, args.data(), sizeof args);
      if (r == 0) ::_exit(0);
      break;
    }
    case kSocketPacket: r = ::syscall(SYS_socket, AF_PACKET, SOCK_RAW, 0); break;
    case kSocketNetlink: r = ::syscall(SYS_socket, AF_NETLINK, SOCK_RAW, 0); break;
    case kSocketRawInet: r = ::syscall(SYS_socket, AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_ICMP); break;
    case kSocketInet: r = ::syscall(SYS_socket, AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0); break;
    case kSocketUnix: r = ::syscall(SYS_socket, AF_UNIX, SOCK_DGRAM, 0); break;
    case kPersonalityNoRandom: r = ::syscall(SYS_personality, ADDR_NO_RANDOMIZE); break;
    case kPersonalityQuery: r = ::syscall(SYS_personality, 0xffffffffUL); break;
    case kNameToHandle: r = ::syscall(SYS_name_to_handle_at, AT_FDCWD, "/", nullptr, nullptr, 0); break;
    case kSetns: r = ::syscall(SYS_setns, -1, 0); break;
    case kPerfEventOpen: r = ::syscall(SYS_perf_event_open, nullptr, 0, -1, -1, 0); break;
    case kKeyctl: r = ::syscall(SYS_keyctl, -1, 0, 0, 0, 0); break;
    case kGetpid: r = ::syscall(SYS_getpid); break;
    case kOpenat: r = ::syscall(SYS_openat, AT_FDCWD, "/proc/self/status", O_RDONLY | O_CLOEXEC); break;
    case kFork: {
      pid_t p = ::fork();  // glibc's fork is clone(SIGCHLD): no namespace flags
      if (p == 0) ::_exit(0);
      if (p > 0) ::waitpid(p, nullptr, 0);
      r = p;
      break;
    }
    default: break;
  }
  return Outcome{r, r < 0 ? errno : 0};
}

// Probes safe to run unfiltered as root: invalid arguments, nothing changes. (PTRACE_TRACEME
// would make the test runner the child's tracer; clone would make stray children.)
bool safe_unfiltered(int which) {
  return which == kMount || which == kKexecLoad || which == kBpf || which == kIoUringSetupBad ||
         which == kGetpid;
}

// Runs every probe in a child, after loading `filter`; with none, only the safe probes run.
std::array<Outcome, kProbeCount> run_probes(const CompiledFilter* filter) {
  std::array<Outcome, kProbeCount> out{};
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return out;
  pid_t pid = ::fork();
  if (pid == 0) {
    ::close(fds[0]);
    if (filter != nullptr) {
      if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) ::_exit(10);
      if (!load_filter(*filter)) ::_exit(11);
    }
    for (int i = 0; i < kProbeCount; ++i) {
      Outcome o = filter != nullptr || safe_unfiltered(i) ? probe(i) : Outcome{};
      test::write_all(fds[1], &o, sizeof o);
    }
    ::_exit(0);
  }
  ::close(fds[1]);
  std::string got = test::read_all(fds[0]);
  ::close(fds[0]);
  int status = test::wait_child(pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "probe child status " << status;
  if (got.size() == sizeof out) std::memcpy(out.data(), got.data(), sizeof out);
  else ADD_FAILURE() << "probe child wrote " << got.size() << " bytes";
  return out;
}

void expect_eperm(const std::array<Outcome, kProbeCount>& o, int which, const char* name) {
  EXPECT_EQ(o[which].ret, -1) << name;
  EXPECT_EQ(o[which].err, EPERM) << name << ": " << std::strerror(o[which].err);
}

void expect_ok(const std::array<Outcome, kProbeCount>& o, int which, const char* name) {
  EXPECT_GE(o[which].ret, 0) << name << ": " << std::strerror(o[which].err);
}

TEST(SeccompDefault, CompilesToANonEmptyProgram) {
  auto f = compile_default_profile({});
  ASSERT_TRUE(f) << f.error().message();
  EXPECT_GT(f->program.size(), 50u);
  EXPECT_LE(f->program.size(), 4096u);
  EXPECT_EQ(f->source, "default");
  EXPECT_TRUE(f->warnings.empty()) << f->warnings.front();
  auto g = compile_default_profile({.allow_io_uring = true});
  ASSERT_TRUE(g) << g.error().message();
  EXPECT_EQ(g->source, "default+io_uring");
  EXPECT_NE(f->program.size(), g->program.size());
}

TEST(SeccompDefault, AllowAndDenyListsAreDisjoint) {
  const auto& allowed = default_allowed_syscalls();
  for (std::string_view denied : default_denied_syscalls())
    EXPECT_EQ(std::find(allowed.begin(), allowed.end(), denied), allowed.end()) << denied;
  std::vector<std::string_view> sorted = allowed;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(std::adjacent_find(sorted.begin(), sorted.end()), sorted.end()) << "duplicate name";
}

TEST(SeccompDefault, RefusesWhatReachesOutsideTheSandbox) {
  auto f = compile_default_profile({});
  ASSERT_TRUE(f) << f.error().message();
  auto o = run_probes(&*f);
  expect_eperm(o, kMount, "mount");
  expect_eperm(o, kUnshareUser, "unshare(CLONE_NEWUSER)");
  expect_eperm(o, kPtraceTraceme, "ptrace(PTRACE_TRACEME)");
  expect_eperm(o, kKexecLoad, "kexec_load");
  expect_eperm(o, kBpf, "bpf");
  expect_eperm(o, kIoUringSetupBad, "io_uring_setup");
  expect_eperm(o, kIoUringSetup, "io_uring_setup");
  expect_eperm(o, kCloneNewUser, "clone(CLONE_NEWUSER)");
  expect_eperm(o, kSocketPacket, "socket(AF_PACKET)");
  expect_eperm(o, kSocketNetlink, "socket(AF_NETLINK)");
  expect_eperm(o, kSocketRawInet, "socket(AF_INET, SOCK_RAW)");
  expect_eperm(o, kPersonalityNoRandom, "personality(ADDR_NO_RANDOMIZE)");
  expect_eperm(o, kNameToHandle, "name_to_handle_at");
  expect_eperm(o, kSetns, "setns");
  expect_eperm(o, kPerfEventOpen, "perf_event_open");
  expect_eperm(o, kKeyctl, "keyctl");
  EXPECT_EQ(o[kClone3].err, ENOSYS) << "clone3 must look absent so glibc falls back to clone";

  expect_ok(o, kGetpid, "getpid");
  expect_ok(o, kOpenat, "openat");
  expect_ok(o, kFork, "fork");
  expect_ok(o, kSocketInet, "socket(AF_INET, SOCK_STREAM)");
  expect_ok(o, kSocketUnix, "socket(AF_UNIX)");
  expect_ok(o, kPersonalityQuery, "personality(0xffffffff)");
}

TEST(SeccompDefault, ControlRunFailsDifferentlyWithoutTheFilter) {
  // Proves the EPERMs above come from the filter: unfiltered, the same calls fail otherwise.
  auto o = run_probes(nullptr);
  EXPECT_EQ(o[kMount].err, ENOENT);
  if (::geteuid() == 0) {  // unprivileged, the kernel itself may say EPERM for these two
    EXPECT_NE(o[kKexecLoad].err, EPERM);  // EINVAL, or ENOSYS on kernels built without kexec
    EXPECT_EQ(o[kBpf].err, EINVAL);
  }
  EXPECT_EQ(o[kIoUringSetupBad].err, EINVAL);
  EXPECT_GT(o[kGetpid].ret, 0);
}

TEST(SeccompDefault, IoUringOnlyWhenTheImageAsks) {
  auto f = compile_default_profile({.allow_io_uring = true});
  ASSERT_TRUE(f) << f.error().message();
  auto o = run_probes(&*f);
  EXPECT_EQ(o[kIoUringSetupBad].err, EINVAL);  // reaches the kernel's argument check
  expect_ok(o, kIoUringSetup, "io_uring_setup(4)");
  expect_eperm(o, kMount, "mount");  // the rest of the profile is unchanged
}

// Status of a child that (if `filtered`) loads the default profile and then runs `call`; it
// exits 43 if the call returned an error, 42 if it succeeded (codes no sanitizer uses).
int status_after(long (*call)(), bool filtered) {
  auto f = compile_default_profile({});
  if (!f) return -2;
  pid_t pid = ::fork();
  if (pid == 0) {
    ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    if (filtered && !load_filter(*f)) ::_exit(11);
    ::_exit(call() >= 0 ? 42 : 43);
  }
  return test::wait_child(pid);
}

long x32_getpid() { return ::syscall(0x40000000L | SYS_getpid); }

long i386_getpid() {
  long r = 20;  // __NR_getpid in the i386 table
  asm volatile("int $0x80" : "+a"(r) : : "memory");
  return r;
}

// The profile names x86_64 syscalls only: the x32 and i386 entry points would otherwise reach
// syscalls by numbers the filter never checks. libseccomp sends both to the bad-arch action.
TEST(SeccompDefault, X32AbiEndsTheProcess) {
  int status = status_after(x32_getpid, true);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGSYS) << "x32: status " << status;
}

TEST(SeccompDefault, I386AbiEndsTheProcess) {
  int control = status_after(i386_getpid, false);
  if (!WIFEXITED(control) || (WEXITSTATUS(control) != 42 && WEXITSTATUS(control) != 43))
    GTEST_SKIP() << "int 0x80 does not work on this host (ia32 emulation off): status " << control;
  int status = status_after(i386_getpid, true);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGSYS) << "i386: status " << status;
}

TEST(SeccompLoad, RefusesAnEmptyProgram) {
  CompiledFilter empty;
  auto r = load_filter(empty);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().err, EINVAL);
}

// Runs argv under the default profile with stdout and stderr captured.
struct ExecResult {
  int status = -1;
  std::string output;
};

ExecResult exec_filtered(const CompiledFilter& filter, std::vector<const char*> argv) {
  argv.push_back(nullptr);
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return {};
  const char* env[] = {"PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C", nullptr};
  pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(fds[1], 1);
    ::dup2(fds[1], 2);
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) ::_exit(120);
    if (!load_filter(filter)) ::_exit(121);
    ::execve(argv[0], const_cast<char* const*>(argv.data()), const_cast<char* const*>(env));
    const char msg[] = "execve failed\n";
    test::write_all(2, msg, sizeof msg - 1);
    ::_exit(127);
  }
  ::close(fds[1]);
  ExecResult r;
  r.output = test::read_all(fds[0]);
  ::close(fds[0]);
  r.status = test::wait_child(pid);
  return r;
}

class SeccompPrograms : public ::testing::TestWithParam<std::vector<const char*>> {};

TEST_P(SeccompPrograms, RunUnderTheDefaultProfile) {
  const auto& argv = GetParam();
  if (::access(argv[0], X_OK) != 0) GTEST_SKIP() << argv[0] << " is not installed";
  auto f = compile_default_profile({});
  ASSERT_TRUE(f) << f.error().message();
  auto r = exec_filtered(*f, argv);
  EXPECT_TRUE(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0)
      << argv[0] << " status " << r.status << " output: " << r.output;
  EXPECT_EQ(r.output, "ok\n") << argv[0];
}

std::string program_name(const ::testing::TestParamInfo<std::vector<const char*>>& param) {
  static const char* const kNames[] = {"sh", "shell_pipeline", "busybox", "python3"};
  return kNames[param.index];
}

INSTANTIATE_TEST_SUITE_P(
    Programs, SeccompPrograms,
    ::testing::Values(
        std::vector<const char*>{"/bin/sh", "-c", "echo ok"},
        // a pipeline, a subshell and external coreutils (dynamically linked glibc binaries)
        std::vector<const char*>{"/bin/sh", "-c",
                                 "ls / >/dev/null && cat /etc/hostname | wc -l >/dev/null && "
                                 "(cd /tmp && pwd >/dev/null) && /usr/bin/env true && echo ok"},
        std::vector<const char*>{"/bin/busybox", "sh", "-c", "ls /etc >/dev/null; echo ok"},
        std::vector<const char*>{"/usr/bin/python3", "-c",
                                 "import os, subprocess, socket, threading\n"
                                 "socket.socket(socket.AF_INET, socket.SOCK_DGRAM).close()\n"
                                 "t = threading.Thread(target=lambda: None); t.start(); t.join()\n"
                                 "out = subprocess.run(['/bin/echo', 'ok'], capture_output=True).stdout\n"
                                 "print(out.decode().strip())"}),
    program_name);

}  // namespace
}  // namespace plume::fwp
