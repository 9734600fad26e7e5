// Hostile workers: each tries one escape from inside the full pipeline (tenant rootfs, default
// seccomp profile, no capabilities, cgroup limits) and reports the outcome; the test asserts refusal.
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ostream>

#include "fwp/spawn_fixture.h"

namespace plume::fwp::test {
namespace {

struct Refusal {
  const char* mode;
  const char* expected;  // the line the worker must print
};

// gtest names the parameterised cases by mode; this keeps ctest's listing readable too.
void PrintTo(const Refusal& r, std::ostream* os) { *os << r.mode; }

class HostileTest : public SpawnTest {
 protected:
  // Runs /bin/hostile with args to completion; returns its output and exit status.
  std::pair<std::string, std::optional<ExitStatus>> run(std::vector<std::string> args,
                                                        const CgroupLimits& limits =
                                                            default_limits()) {
    args.insert(args.begin(), "/bin/hostile");
    auto w = start(make_tenant_spec(std::move(args)), limits);
    EXPECT_TRUE(w.ok()) << w.error().message();
    if (!w.ok()) return {"", std::nullopt};
    last_group_ = w->group;
    w->read_to_eof(10s);
    return {w->output, w->wait(10s)};
  }
  std::string last_group_;
};

// A process outside every worker: a child of the test that waits to be killed.
class Bystander {
 public:
  Bystander() {
    pid_ = ::fork();
    if (pid_ == 0) {
      ::pause();
      ::_exit(0);
    }
    pidfd_.reset(static_cast<int>(::syscall(SYS_pidfd_open, pid_, 0)));
  }
  ~Bystander() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  pid_t pid() const { return pid_; }
  // True while it has not exited (its pidfd is not readable).
  bool alive() const {
    pollfd pfd{pidfd_.get(), POLLIN, 0};
    return pidfd_.valid() && ::poll(&pfd, 1, 0) == 0;
  }

 private:
  pid_t pid_ = -1;
  UniqueFd pidfd_;
};

class HostileRefusalTest : public HostileTest, public ::testing::WithParamInterface<Refusal> {};

TEST_P(HostileRefusalTest, IsRefused) {
  auto [out, exit] = run({GetParam().mode});
  EXPECT_NE(out.find(std::string(GetParam().expected) + "\n"), std::string::npos)
      << "got: " << out;
  ASSERT_TRUE(exit.has_value());
  EXPECT_TRUE(exit->exited) << "killed by signal " << exit->signal << ": " << out;
}

INSTANTIATE_TEST_SUITE_P(
    Escapes, HostileRefusalTest,
    ::testing::Values(Refusal{"mount", "mount: EPERM"}, Refusal{"ptrace", "ptrace: EPERM"},
                      Refusal{"unshare_user", "unshare: EPERM"}, Refusal{"setns", "setns: EPERM"},
                      Refusal{"kexec_load", "kexec_load: EPERM"}, Refusal{"bpf", "bpf: EPERM"},
                      Refusal{"raw_packet", "socket AF_PACKET: EPERM"},
                      Refusal{"raw_inet", "socket AF_INET SOCK_RAW: EPERM"}),
    [](const ::testing::TestParamInfo<Refusal>& p) { return std::string(p.param.mode); });

TEST_F(HostileTest, CannotReadAnotherTenantsFile) {
  // The control first: the worker can read its own tenant's 0600 file, so the refusal below is
  // about ownership, not about a missing file.
  auto [mine, mine_exit] = run({"read", "/data/mine"});
  EXPECT_NE(mine.find("read: OK\n"), std::string::npos) << mine;
  auto [theirs, theirs_exit] = run({"read", "/data/secret"});
  EXPECT_NE(theirs.find("read: EACCES\n"), std::string::npos) << theirs;
}

TEST_F(HostileTest, CannotSeeOrKillProcessesOutside) {
  Bystander bystander;
  ASSERT_TRUE(bystander.alive());
  auto [out, exit] = run({"kill", std::to_string(bystander.pid())});
  EXPECT_NE(out.find("kill: ESRCH\n"), std::string::npos) << out;
  EXPECT_TRUE(bystander.alive());
}

TEST_F(HostileTest, KillEverythingReachesNothingOutside) {
  Bystander bystander;
  auto [out, exit] = run({"kill_all"});
  EXPECT_NE(out.find("kill -1: "), std::string::npos) << out;
  ASSERT_TRUE(exit.has_value());
  EXPECT_TRUE(exit->exited) << out;
  EXPECT_TRUE(bystander.alive());
  // Our own process group and session were not touched either: we are still here to check.
  EXPECT_EQ(::kill(bystander.pid(), 0), 0);
}

TEST_F(HostileTest, ForkBombStopsAtThePidsLimit) {
  CgroupLimits limits = default_limits();
  limits.pids_max = 16;
  auto [out, exit] = run({"forkbomb"}, limits);
  EXPECT_NE(out.find("fork: EAGAIN after "), std::string::npos) << out;
  const auto at = out.find("after ");
  ASSERT_NE(at, std::string::npos);
  EXPECT_LE(std::stoi(out.substr(at + 6)), 15) << out;
  ASSERT_TRUE(exit.has_value());
  auto stats = cgroups().stats(last_group_);
  ASSERT_TRUE(stats.ok()) << stats.error().message();
  EXPECT_GE(stats->pids_max_hits, 1U);
  // The limit held the bomb inside its group: we can still fork.
  const pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  ASSERT_GT(child, 0);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
}

TEST_F(HostileTest, MemoryHogIsOomKilled) {
  CgroupLimits limits = default_limits();
  limits.memory_bytes = 32ULL << 20;
  auto [out, exit] = run({"memhog", "512"}, limits);
  ASSERT_TRUE(exit.has_value());
  EXPECT_FALSE(exit->exited) << out;
  EXPECT_EQ(exit->signal, SIGKILL) << out;
  EXPECT_EQ(out.find("survived"), std::string::npos) << out;
  auto stats = cgroups().stats(last_group_);
  ASSERT_TRUE(stats.ok()) << stats.error().message();
  EXPECT_GE(stats->oom_kills, 1U);
}

}  // namespace
}  // namespace plume::fwp::test
