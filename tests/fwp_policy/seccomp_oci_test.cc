// OCI runtime-spec seccomp profiles: parsed, compiled and loaded for real in forked children;
// malformed profiles give errors that name the field.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/io_uring.h>
#include <netinet/in.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>

#include <cstring>
#include <functional>

#include "child.h"
#include "plume/fwp/seccomp_profile.h"

namespace plume::fwp {
namespace {

struct Outcome {
  long ret = 0;
  int err = 0;
};

// Loads `filter` in a child, runs `call` there and returns its result.
Outcome in_child(const CompiledFilter& filter, long (*call)()) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return {};
  pid_t pid = ::fork();
  if (pid == 0) {
    ::close(fds[0]);
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) ::_exit(10);
    if (!load_filter(filter)) ::_exit(11);
    errno = 0;
    long r = call();
    Outcome o{r, r < 0 ? errno : 0};
    test::write_all(fds[1], &o, sizeof o);
    ::_exit(0);
  }
  ::close(fds[1]);
  std::string got = test::read_all(fds[0]);
  ::close(fds[0]);
  int status = test::wait_child(pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "child status " << status;
  Outcome o{};
  if (got.size() == sizeof o) std::memcpy(&o, got.data(), sizeof o);
  else ADD_FAILURE() << "child wrote " << got.size() << " bytes";
  return o;
}

long do_getcwd() {
  char buf[256];
  return ::syscall(SYS_getcwd, buf, sizeof buf);
}
long do_getpid() { return ::syscall(SYS_getpid); }
long do_io_uring_setup() {
  io_uring_params p{};
  long r = ::syscall(SYS_io_uring_setup, 4, &p);
  if (r >= 0) ::close(static_cast<int>(r));
  return r;
}
long do_personality_norandom() { return ::syscall(SYS_personality, ADDR_NO_RANDOMIZE); }
long do_personality_query() { return ::syscall(SYS_personality, 0xffffffffUL); }
long do_raw_socket() {
  long r = ::syscall(SYS_socket, AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_ICMP);
  if (r >= 0) ::close(static_cast<int>(r));
  return r;
}
long do_dgram_socket() {
  long r = ::syscall(SYS_socket, AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (r >= 0) ::close(static_cast<int>(r));
  return r;
}

const char* kDenyGetcwd = R"({
  "defaultAction": "SCMP_ACT_ALLOW",
  "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
  "syscalls": [
    {"names": ["getcwd"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
    {"names": ["no_such_syscall_h1", "chown32", "getpid"], "action": "SCMP_ACT_ALLOW"},
    {"names": ["io_uring_setup"], "action": "SCMP_ACT_ALLOW"}
  ]
})";

TEST(SeccompOci, ErrnoRetReachesTheCaller) {
  auto f = compile_oci_profile(kDenyGetcwd, {}, "deny-getcwd.json");
  ASSERT_TRUE(f) << f.error().message();
  EXPECT_EQ(f->source, "deny-getcwd.json");
  Outcome o = in_child(*f, do_getcwd);
  EXPECT_EQ(o.ret, -1);
  EXPECT_EQ(o.err, 38);
  EXPECT_GT(in_child(*f, do_getpid).ret, 0);
}

TEST(SeccompOci, UnknownSyscallNamesAreSkippedWithAWarning) {
  auto f = compile_oci_profile(kDenyGetcwd, {}, "deny-getcwd.json");
  ASSERT_TRUE(f) << f.error().message();
  bool warned = false;
  for (const auto& w : f->warnings) warned |= w.find("no_such_syscall_h1") != std::string::npos;
  EXPECT_TRUE(warned);
  for (const auto& w : f->warnings) EXPECT_EQ(w.find("getpid"), std::string::npos) << w;
}

TEST(SeccompOci, IoUringRefusedUnlessAllowedWhateverTheProfileSays) {
  auto f = compile_oci_profile(kDenyGetcwd, {}, "p");
  ASSERT_TRUE(f) << f.error().message();
  Outcome o = in_child(*f, do_io_uring_setup);
  EXPECT_EQ(o.ret, -1);
  EXPECT_EQ(o.err, EPERM);
  auto g = compile_oci_profile(kDenyGetcwd, {.allow_io_uring = true}, "p");
  ASSERT_TRUE(g) << g.error().message();
  EXPECT_GE(in_child(*g, do_io_uring_setup).ret, 0);
}

TEST(SeccompOci, ArgumentRules) {
  const char* profile = R"({
    "defaultAction": "SCMP_ACT_ALLOW",
    "syscalls": [
      {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": 22,
       "args": [{"index": 0, "value": 262144, "op": "SCMP_CMP_EQ"}]},
      {"names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
       "args": [{"index": 1, "value": 15, "valueTwo": 3, "op": "SCMP_CMP_MASKED_EQ"}]}
    ]
  })";
  auto f = compile_oci_profile(profile, {}, "args.json");
  ASSERT_TRUE(f) << f.error().message();
  Outcome o = in_child(*f, do_personality_norandom);
  EXPECT_EQ(o.err, 22);
  EXPECT_GE(in_child(*f, do_personality_query).ret, 0);
  EXPECT_EQ(in_child(*f, do_raw_socket).err, 13);  // SOCK_RAW under the 0xf type mask
  EXPECT_GE(in_child(*f, do_dgram_socket).ret, 0);
}

TEST(SeccompOci, RepeatedArgumentIndexMeansAnyOf) {
  // runc's reading: two comparisons on one argument become two rules (either matches).
  const char* profile = R"({
    "defaultAction": "SCMP_ACT_ALLOW",
    "syscalls": [{"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": 22,
      "args": [{"index": 0, "value": 262144, "op": "SCMP_CMP_EQ"},
               {"index": 0, "value": 4294967295, "op": "SCMP_CMP_EQ"}]}]
  })";
  auto f = compile_oci_profile(profile, {}, "or.json");
  ASSERT_TRUE(f) << f.error().message();
  EXPECT_EQ(in_child(*f, do_personality_norandom).err, 22);
  EXPECT_EQ(in_child(*f, do_personality_query).err, 22);
}

TEST(SeccompOci, DefaultErrnoRetAndKillActions) {
  const char* profile = R"({
    "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
    "comment": "the extra names keep ASan's runtime working in the child",
    "syscalls": [{"names": ["exit_group", "exit", "write", "getpid", "rt_sigreturn", "brk",
                            "mmap", "munmap", "futex", "gettid", "sigaltstack", "rt_sigaction",
                            "rt_sigprocmask", "prctl", "madvise"],
                  "action": "SCMP_ACT_ALLOW"},
                 {"names": ["getppid"], "action": "SCMP_ACT_KILL_PROCESS"}]
  })";
  auto f = compile_oci_profile(profile, {}, "strict.json");
  ASSERT_TRUE(f) << f.error().message();
  Outcome o = in_child(*f, do_getcwd);
  EXPECT_EQ(o.err, EPERM);
  // A killed child writes nothing back: check the status directly.
  pid_t pid = ::fork();
  if (pid == 0) {
    ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    if (!load_filter(*f)) ::_exit(11);
    ::syscall(SYS_getppid);
    ::_exit(0);
  }
  int status = test::wait_child(pid);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGSYS) << status;
}

struct Bad {
  const char* json;
  const char* mentions;
};

class SeccompOciErrors : public ::testing::TestWithParam<Bad> {};

TEST_P(SeccompOciErrors, NameTheProblem) {
  auto f = compile_oci_profile(GetParam().json, {}, "bad.json");
  ASSERT_FALSE(f) << GetParam().json;
  std::string msg = f.error().message();
  EXPECT_NE(msg.find(GetParam().mentions), std::string::npos) << msg;
  EXPECT_NE(msg.find("bad.json"), std::string::npos) << msg;
}

INSTANTIATE_TEST_SUITE_P(
    Malformed, SeccompOciErrors,
    ::testing::Values(
        Bad{"this is not json", "not valid JSON"}, Bad{"[1, 2]", "JSON object"},
        Bad{R"({"syscalls": []})", "defaultAction: missing"},
        Bad{R"({"defaultAction": 3})", "defaultAction: must be a string"},
        Bad{R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": {}})", "syscalls: must be an array"},
        Bad{R"({"defaultAction": "SCMP_ACT_NOPE"})", "unknown action 'SCMP_ACT_NOPE'"},
        Bad{R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_TRACE"}]})",
            "syscalls[0].action: SCMP_ACT_TRACE is not supported"},
        Bad{R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": "read", "action": "SCMP_ACT_ERRNO"}]})",
            "syscalls[0].names: must be an array"},
        Bad{R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"]}]})",
            "syscalls[0].action: missing"},
        Bad{R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO", "errnoRet": -1}]})",
            "syscalls[0].errnoRet"},
        Bad{R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO",
              "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_ALMOST"}]}]})",
            "syscalls[0].args[0].op: unknown operator"},
        Bad{R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO",
              "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]})",
            "syscalls[0].args[0].index"},
        Bad{R"({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_Z80"]})",
            "architectures[0]: unknown architecture 'SCMP_ARCH_Z80'"}));

}  // namespace
}  // namespace plume::fwp
