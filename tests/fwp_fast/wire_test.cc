// Pieces of the fast path that need no root: the control records' validation, pidfd fdinfo
// and /proc usage parsing, and the per-instance seccomp filter (loaded for real in a forked
// child).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>

#include "instance_filter.h"
#include "pidfd_info.h"
#include "plume/fwp/process_usage.h"
#include "template_wire.h"

namespace plume::fwp {
namespace {

struct Pair {
  int a = -1, b = -1;
  Pair() {
    int sv[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
    a = sv[0];
    b = sv[1];
  }
  ~Pair() {
    ::close(a);
    ::close(b);
  }
};

TEST(FwpWire, RecordWithFdRoundTrips) {
  Pair p;
  wire::Msg m;
  m.type = wire::Type::forked;
  m.instance_id = 42;
  m.pid = 7;
  int pipefd[2];
  ASSERT_EQ(::pipe(pipefd), 0);
  ASSERT_EQ(wire::send_msg(p.a, m, pipefd[0]), 0);
  wire::Msg got;
  int fd = -1;
  ASSERT_EQ(wire::recv_msg(p.b, got, &fd), 0);
  EXPECT_EQ(got.type, wire::Type::forked);
  EXPECT_EQ(got.instance_id, 42u);
  EXPECT_EQ(got.pid, 7);
  EXPECT_GE(fd, 0);
  EXPECT_NE(fd, pipefd[0]);
  ::close(fd);
  ::close(pipefd[0]);
  ::close(pipefd[1]);
}

// Which pipe an fd is (its inode), to tell received copies apart.
ino_t inode_of(int fd) {
  struct stat st{};
  return ::fstat(fd, &st) == 0 ? st.st_ino : 0;
}

TEST(FwpWire, ARecordCarriesThreeFdsInOrderAndUnaskedFdsAreClosed) {
  Pair p;
  int pipes[3][2];
  for (auto& pp : pipes) ASSERT_EQ(::pipe(pp), 0);
  wire::Msg m;
  m.type = wire::Type::fork;
  ASSERT_EQ(wire::send_msg(p.a, m, pipes[0][1], pipes[1][1], pipes[2][1]), 0);
  wire::Msg got;
  int fd = -1;
  int more[2] = {-1, -1};
  ASSERT_EQ(wire::recv_msg(p.b, got, &fd, false, more, 2), 0);
  EXPECT_EQ(inode_of(fd), inode_of(pipes[0][1]));
  EXPECT_EQ(inode_of(more[0]), inode_of(pipes[1][1]));
  EXPECT_EQ(inode_of(more[1]), inode_of(pipes[2][1]));
  for (int f : {fd, more[0], more[1]}) EXPECT_NE(::fcntl(f, F_GETFD) & FD_CLOEXEC, 0);
  ::close(fd);
  ::close(more[0]);
  ::close(more[1]);
  // A receiver that asks for one fd keeps the first and closes the others: once our write ends
  // are closed too, the second and third pipes read EOF (no copy of their write end survives).
  ASSERT_EQ(wire::send_msg(p.a, m, pipes[0][1], pipes[1][1], pipes[2][1]), 0);
  ASSERT_EQ(wire::recv_msg(p.b, got, &fd), 0);
  EXPECT_EQ(inode_of(fd), inode_of(pipes[0][1]));
  for (auto& pp : pipes) ::close(pp[1]);
  char c;
  EXPECT_EQ(::read(pipes[1][0], &c, 1), 0);
  EXPECT_EQ(::read(pipes[2][0], &c, 1), 0);
  ::close(fd);
  for (auto& pp : pipes) ::close(pp[0]);
}

TEST(FwpWire, WrongSizeMagicOrVersionIsRefusedAndItsFdsClosed) {
  Pair p;
  const char junk[16] = "short";
  ASSERT_EQ(::send(p.a, junk, sizeof junk, 0), static_cast<ssize_t>(sizeof junk));
  wire::Msg got;
  int fd = 123;
  EXPECT_EQ(wire::recv_msg(p.b, got, &fd), EBADMSG);
  EXPECT_EQ(fd, -1);
  wire::Msg bad;
  bad.magic = 0xdeadbeef;
  ASSERT_EQ(wire::send_msg(p.a, bad, 0), 0);
  EXPECT_EQ(wire::recv_msg(p.b, got, &fd), EBADMSG);
  EXPECT_EQ(fd, -1);
  wire::Msg old;
  old.version = 99;
  ASSERT_EQ(wire::send_msg(p.a, old), 0);
  EXPECT_EQ(wire::recv_msg(p.b, got, &fd), EBADMSG);
  EXPECT_EQ(wire::recv_msg(p.b, got, &fd, true), EAGAIN);
  ::shutdown(p.a, SHUT_WR);
  EXPECT_EQ(wire::recv_msg(p.b, got, &fd), EPIPE);
}

TEST(FwpPidfdInfo, ParsesPidAndNestedPids) {
  auto info = parse_pidfd_info("pos:\t0\nflags:\t02000002\nmnt_id:\t15\nino:\t1057\nPid:\t4242\nNSpid:\t4242\t17\n");
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->pid, 4242);
  EXPECT_EQ(info->ns_pids, (std::vector<pid_t>{4242, 17}));
  EXPECT_FALSE(parse_pidfd_info("pos:\t0\nflags:\t02\n").ok());
  auto gone = parse_pidfd_info("Pid:\t-1\n");
  ASSERT_TRUE(gone.ok());
  EXPECT_EQ(gone->pid, -1);
}

TEST(FwpPidfdInfo, ReadsARealPidfd) {
  const int fd = static_cast<int>(::syscall(SYS_pidfd_open, ::getpid(), 0));
  ASSERT_GE(fd, 0);
  auto info = pidfd_info(fd);
  ::close(fd);
  ASSERT_TRUE(info.ok()) << info.error().message();
  EXPECT_EQ(info->pid, ::getpid());
  ASSERT_FALSE(info->ns_pids.empty());
  EXPECT_EQ(info->ns_pids.front(), ::getpid());
  int not_pidfd[2];
  ASSERT_EQ(::pipe(not_pidfd), 0);
  EXPECT_FALSE(pidfd_info(not_pidfd[0]).ok());
  ::close(not_pidfd[0]);
  ::close(not_pidfd[1]);
}

TEST(FwpProcessUsage, ParsesCpuTicksAndPeakResidentMemory) {
  // A name with spaces and parentheses; utime 7 and stime 5 ticks are fields 14 and 15.
  const char* stat = "4242 (a b) (c)) S 1 4242 4242 0 -1 4194560 100 0 0 0 7 5 0 0 20 0 1 0 99 ...";
  auto u = parse_process_usage(stat, "Name:\ta b\nVmPeak:\t 9000 kB\nVmHWM:\t    1234 kB\n", 100);
  ASSERT_TRUE(u);
  EXPECT_EQ(u->cpu_ns, 120000000u);
  EXPECT_EQ(u->peak_rss_bytes, 1234u * 1024);
  // A zombie has no memory lines: its peak is 0, its CPU still counts.
  auto zombie = parse_process_usage(stat, "Name:\tx\nState:\tZ (zombie)\n", 100);
  ASSERT_TRUE(zombie);
  EXPECT_EQ(zombie->peak_rss_bytes, 0u);
  EXPECT_EQ(zombie->cpu_ns, 120000000u);
  EXPECT_FALSE(parse_process_usage("4242 (x) S 1 2 3", "", 100));  // cut short
  EXPECT_FALSE(parse_process_usage("no name", "", 100));
  EXPECT_FALSE(parse_process_usage(stat, "", 0));
}

TEST(FwpProcessUsage, ParsesStateAndParentAfterANameThatLooksLikeFields) {
  // tpgid (field 8) is -1 for a process without a controlling terminal.
  auto s = parse_process_stat("4242 (x) S 7 (y) R 9) Z 31 4242 4242 0 -1 4194560 100 0 0 0 7 5 0 0 20");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->state, 'Z');
  EXPECT_EQ(s->parent, 31);
  EXPECT_EQ(s->utime_ticks, 7u);
  EXPECT_EQ(s->stime_ticks, 5u);
  EXPECT_FALSE(parse_process_stat("4242 (x) S 1 2 3"));  // cut short
  EXPECT_FALSE(parse_process_stat("4242 (x)"));
  EXPECT_FALSE(parse_process_stat("4242 (x) S 1 two 3 4 5 6 7 8 9 10 11 12"));
}

TEST(FwpProcessUsage, ReadsThisProcess) {
  auto u = process_usage(::getpid());
  ASSERT_TRUE(u);
  EXPECT_GT(u->peak_rss_bytes, 0u);
  EXPECT_FALSE(process_usage(0));
  auto s = process_stat(::getpid());
  ASSERT_TRUE(s);
  EXPECT_EQ(s->state, 'R');  // it is running: it is reading this
  EXPECT_EQ(s->parent, ::getppid());
}

// In a child: NNP, then the filter; each probe's errno goes into the exit code's bits.
TEST(FwpInstanceFilter, OnlySelfCanBeSignalledAndNoNewRings) {
  const pid_t parent = ::getpid();
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) _exit(100);
    if (libplume::load_instance_filter(::getpid()) != 0) _exit(101);
    int bits = 0;
    if (::kill(parent, 0) == -1 && errno == EPERM) bits |= 1;
    if (::kill(::getpid(), 0) == 0) bits |= 2;
    if (::kill(-1, 0) == -1 && errno == EPERM) bits |= 4;
    if (::syscall(SYS_tgkill, parent, parent, 0) == -1 && errno == EPERM) bits |= 8;
    if (::syscall(SYS_io_uring_setup, 4, nullptr) == -1 && errno == EPERM) bits |= 16;
    if (::syscall(SYS_pidfd_open, parent, 0) == -1 && errno == EPERM) bits |= 32;
    if (::getppid() == parent) bits |= 64;  // everything else still works
    _exit(bits);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 127) << "bits: " << WEXITSTATUS(status);
}

TEST(FwpInstanceFilter, IsSmall) {
  sock_filter insns[libplume::kMaxInstanceFilter];
  const size_t n = libplume::build_instance_filter(1234, insns);
  EXPECT_LE(n, libplume::kMaxInstanceFilter);
  EXPECT_GT(n, 10u);
  EXPECT_EQ(insns[n - 1].code, BPF_RET | BPF_K);
}

}  // namespace
}  // namespace plume::fwp
