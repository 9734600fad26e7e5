// The pipeline's error reporting, fd hygiene and exit reporting, with real spawns.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fwp/spawn_fixture.h"

namespace plume::fwp::test {
namespace {

int send_signal(const Worker& w, int sig) {
  return static_cast<int>(::syscall(SYS_pidfd_send_signal, w.proc.pidfd.get(), sig, nullptr, 0));
}

TEST_F(SpawnTest, MissingBinaryFailsAtExecve) {
  auto w = start(make_spec({"/nonexistent/plume-binary"}));
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.error().step, Step::execve);
  EXPECT_EQ(w.error().err, ENOENT);
  EXPECT_NE(w.error().message().find("execve /nonexistent/plume-binary"), std::string::npos)
      << w.error().message();
}

TEST_F(SpawnTest, CommandIsSearchedInTheWorkersPath) {
  auto missing = start(make_spec({"plume-no-such-command"}));
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().step, Step::execve);
  EXPECT_EQ(missing.error().err, ENOENT);

  auto found = start(make_spec({"sh", "-c", "exit 0"}));
  ASSERT_TRUE(found.ok()) << found.error().message();
  auto exit = found->wait();
  ASSERT_TRUE(exit.has_value());
  EXPECT_TRUE(exit->exited && exit->code == 0);
}

TEST_F(SpawnTest, BadRootfsPathFailsAtRootfsNamingThePath) {
  auto spec = make_spec({"/bin/true"});
  spec.rootfs.path = "/nonexistent-plume-rootfs-" + std::to_string(::getpid());
  auto w = start(spec);
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.error().step, Step::rootfs);
  EXPECT_EQ(w.error().err, ENOENT);
  EXPECT_NE(w.error().message().find(spec.rootfs.path), std::string::npos) << w.error().message();
  EXPECT_EQ(w.error().message().rfind("rootfs: ", 0), 0U) << w.error().message();
}

TEST_F(SpawnTest, UnmappedIdFailsAtSetIds) {
  auto spec = make_spec({"/bin/true"});
  spec.uid = 70000;  // outside the 65536 ids of the map
  auto w = start(spec);
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.error().step, Step::set_ids);
  EXPECT_EQ(w.error().err, EINVAL);
}

TEST_F(SpawnTest, OnlyGrantedFdsReachTheWorker) {
  // Leaked on purpose: fds without O_CLOEXEC, as a careless supervisor library might hold.
  UniqueFd a(::open("/dev/null", O_RDONLY));
  UniqueFd b(::open("/etc/hostname", O_RDONLY));
  int p[2];
  ASSERT_EQ(::pipe(p), 0);
  UniqueFd p0(p[0]);
  UniqueFd p1(p[1]);
  ASSERT_TRUE(a && b);
  auto w = start(make_tenant_spec({"/bin/hostile", "fds"}));
  ASSERT_TRUE(w.ok()) << w.error().message();
  w->read_to_eof();
  EXPECT_NE(w->output.find("fds: 0 1 2\n"), std::string::npos) << w->output;
  auto exit = w->wait();
  ASSERT_TRUE(exit.has_value());
  EXPECT_TRUE(exit->exited && exit->code == 0);
}

// granted_fds = {.., 4, 3}: the worker's fd 3 is our fd 4 and vice versa. Copying naively
// (dup2(4, 3) first) would lose our fd 3 before it reaches the worker's fd 4.
TEST_F(SpawnTest, GrantedFdsThatSwapNumbersArriveIntact) {
  int out[2];
  ASSERT_EQ(::pipe2(out, O_CLOEXEC), 0);
  UniqueFd out_r(out[0]);
  UniqueFd out_w(out[1]);
  SandboxSpec spec = make_tenant_spec({"/bin/hostile", "fds"});
  auto group = cgroups().create("t/swap", default_limits());
  ASSERT_TRUE(group.ok()) << group.error().message();
  spec.cgroup_procs_files = cgroups().procs_files("t/swap");

  // Fd numbers 3 and 4 are only ours to take in a child of the test process.
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    int a[2];
    int b[2];
    if (::pipe(a) != 0 || ::pipe(b) != 0) ::_exit(10);
    if (::write(a[1], "A", 1) != 1 || ::write(b[1], "B", 1) != 1) ::_exit(11);
    const int high_a = ::fcntl(a[0], F_DUPFD, 100);
    const int high_b = ::fcntl(b[0], F_DUPFD, 100);
    const int devnull = ::fcntl(::open("/dev/null", O_RDONLY), F_DUPFD, 100);
    const int high_out = ::fcntl(out[1], F_DUPFD, 100);
    if (::dup2(high_a, 3) != 3 || ::dup2(high_b, 4) != 4) ::_exit(12);
    spec.granted_fds = {devnull, high_out, high_out, 4, 3};
    auto proc = spawn_and_wait_exec(spec);
    if (!proc) ::_exit(13);
    ::close(high_out);
    auto status = reap(proc->pidfd.get(), true);
    ::_exit(status.ok() && status->exited && status->code == 0 ? 0 : 14);
  }
  out_w.reset();
  Worker reader;  // only for its output reading
  reader.out = std::move(out_r);
  reader.read_to_eof();
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << reader.output;
  EXPECT_NE(reader.output.find("fds: 0 1 2 3 4\n"), std::string::npos) << reader.output;
  EXPECT_NE(reader.output.find("fd3=B\n"), std::string::npos) << reader.output;
  EXPECT_NE(reader.output.find("fd4=A\n"), std::string::npos) << reader.output;
}

TEST_F(SpawnTest, ExitCodeIsReported) {
  auto w = start(make_spec({"/bin/sh", "-c", "exit 3"}));
  ASSERT_TRUE(w.ok()) << w.error().message();
  auto exit = w->wait();
  ASSERT_TRUE(exit.has_value());
  EXPECT_TRUE(exit->exited);
  EXPECT_EQ(exit->code, 3);
  EXPECT_EQ(exit->signal, 0);
  EXPECT_GT(exit->usage.ru_maxrss, 0) << "rusage was not filled in";
}

TEST_F(SpawnTest, KillFromOutsideIsReportedAsSignal) {
  auto w = start(make_tenant_spec({"/bin/hostile", "block"}));
  ASSERT_TRUE(w.ok()) << w.error().message();
  ASSERT_TRUE(w->read_until("ready\n")) << w->output;
  auto early = reap(w->proc.pidfd.get());
  ASSERT_FALSE(early.ok()) << "reaped a live worker";
  EXPECT_EQ(early.error().err, EAGAIN);
  ASSERT_EQ(send_signal(*w, SIGKILL), 0);
  auto exit = w->wait();
  ASSERT_TRUE(exit.has_value());
  EXPECT_FALSE(exit->exited);
  EXPECT_EQ(exit->signal, SIGKILL);
}

// plumed blocks the signals it reads through a signalfd and ignores SIGPIPE; neither may leak into
// a worker (a blocked or ignored SIGPIPE changes how `yes | head` and friends end).
TEST_F(SpawnTest, WorkerStartsWithDefaultSignals) {
  sigset_t block, old_mask;
  sigemptyset(&block);
  sigaddset(&block, SIGTERM);
  sigaddset(&block, SIGINT);
  ASSERT_EQ(::sigprocmask(SIG_BLOCK, &block, &old_mask), 0);
  struct sigaction ign {}, old_pipe {};
  ign.sa_handler = SIG_IGN;
  ASSERT_EQ(::sigaction(SIGPIPE, &ign, &old_pipe), 0);
  auto w = start(make_spec({"/bin/grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status"}));
  ::sigprocmask(SIG_SETMASK, &old_mask, nullptr);
  ::sigaction(SIGPIPE, &old_pipe, nullptr);
  ASSERT_TRUE(w.ok()) << w.error().message();
  w->read_to_eof();
  ASSERT_TRUE(w->wait().has_value());
  EXPECT_NE(w->output.find("SigBlk:\t0000000000000000"), std::string::npos) << w->output;
  EXPECT_NE(w->output.find("SigIgn:\t0000000000000000"), std::string::npos) << w->output;
}

// The worker is pid 1 of its namespace: only signals it handles reach it. A shell that traps
// SIGTERM gets it.
TEST_F(SpawnTest, SigtermReachesAWorkerThatHandlesIt) {
  auto w = start(make_spec({"/bin/sh", "-c", "trap 'exit 7' TERM; echo ready; sleep 1000 & wait"}));
  ASSERT_TRUE(w.ok()) << w.error().message();
  ASSERT_TRUE(w->read_until("ready\n")) << w->output;
  ASSERT_EQ(send_signal(*w, SIGTERM), 0);
  auto exit = w->wait();
  ASSERT_TRUE(exit.has_value());
  EXPECT_TRUE(exit->exited);
  EXPECT_EQ(exit->code, 7);
}

// The supervisor dies (an intermediate process that spawned the worker is SIGKILLed): the worker
// must die with it (PR_SET_PDEATHSIG), not linger as an orphan.
TEST_F(SpawnTest, WorkerDiesWithItsParent) {
  // Orphans come to us, so that we can reap the worker and see how it died.
  ASSERT_EQ(::prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), 0);
  int report[2];
  ASSERT_EQ(::pipe2(report, O_CLOEXEC), 0);
  UniqueFd report_r(report[0]);
  UniqueFd report_w(report[1]);
  int hold[2];  // the worker's stdin: we keep the write end, so EOF cannot end it
  ASSERT_EQ(::pipe2(hold, O_CLOEXEC), 0);
  UniqueFd hold_r(hold[0]);
  UniqueFd hold_w(hold[1]);
  UniqueFd devnull(::open("/dev/null", O_WRONLY | O_CLOEXEC));
  SandboxSpec spec = make_tenant_spec({"/bin/hostile", "block"});
  auto group = cgroups().create("t/orphan", default_limits());
  ASSERT_TRUE(group.ok()) << group.error().message();
  spec.cgroup_procs_files = cgroups().procs_files("t/orphan");
  spec.granted_fds = {hold_r.get(), devnull.get(), devnull.get()};

  const pid_t intermediate = ::fork();
  ASSERT_GE(intermediate, 0);
  // Whatever fails below, the intermediate process does not outlive the test.
  struct Reaper {
    pid_t pid;
    ~Reaper() {
      if (::kill(pid, SIGKILL) == 0) ::waitpid(pid, nullptr, 0);
    }
  } reaper{intermediate};
  if (intermediate == 0) {
    auto proc = spawn_and_wait_exec(spec);
    const pid_t pid = proc ? proc->pid : -1;
    if (::write(report[1], &pid, sizeof pid) != sizeof pid) ::_exit(1);
    ::pause();
    ::_exit(0);
  }
  hold_r.reset();
  pid_t worker = -1;
  pollfd pfd{report_r.get(), POLLIN, 0};
  ASSERT_EQ(::poll(&pfd, 1, 5000), 1);
  ASSERT_EQ(::read(report_r.get(), &worker, sizeof worker), static_cast<ssize_t>(sizeof worker));
  ASSERT_GT(worker, 0) << "spawn failed in the intermediate process";
  UniqueFd worker_fd(static_cast<int>(::syscall(SYS_pidfd_open, worker, 0)));
  ASSERT_TRUE(worker_fd.valid());

  ASSERT_EQ(::kill(intermediate, SIGKILL), 0);
  int status = 0;
  ASSERT_EQ(::waitpid(intermediate, &status, 0), intermediate);

  pollfd wfd{worker_fd.get(), POLLIN, 0};
  ASSERT_EQ(::poll(&wfd, 1, 5000), 1) << "worker outlived its parent";
  auto exit = reap(worker_fd.get(), true);
  ::prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0);
  ASSERT_TRUE(exit.ok()) << exit.error().message();
  EXPECT_FALSE(exit->exited);
  EXPECT_EQ(exit->signal, SIGKILL);
}

}  // namespace
}  // namespace plume::fwp::test
