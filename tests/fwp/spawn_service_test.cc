// The spawn helper (plume/fwp/spawn_service.h): workers it clones are the caller's children, with
// the same sandbox and the same error reporting as spawn(); it leaves no zombie behind, holds
// nothing of the caller's but its socket, does not grow with what the caller maps later, and when
// it is gone the caller spawns by itself.
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "fwp/spawn_fixture.h"
#include "support/proc_status.h"

namespace plume::fwp::test {
namespace {

using plume::test::proc_status_field;

int zombie_children() { return plume::test::zombie_children_of(::getpid()); }

size_t line_count(const std::string& path) {
  std::ifstream in(path);
  size_t n = 0;
  for (std::string line; std::getline(in, line);) ++n;
  return n;
}

std::string limits_line(pid_t pid, const std::string& name) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/limits");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(name, 0) == 0) return line;
  }
  return "<no " + name + ">";
}

bool exits_within(int pidfd, int timeout_ms) {
  pollfd p{pidfd, POLLIN, 0};
  return ::poll(&p, 1, timeout_ms) == 1;
}

// The helper as a fork of this process (SpawnService::start()), or as plume-spawn, exec'd
// (start(binary)), which is what plumed runs and what can be replaced.
enum class HelperKind { fork, exec };
void PrintTo(HelperKind kind, std::ostream* os) { *os << (kind == HelperKind::fork ? "forked" : "exec'd"); }

class SpawnServiceFixture : public SpawnTest {
 protected:
  virtual HelperKind kind() const = 0;
  void SetUp() override {
    SpawnTest::SetUp();
    if (IsSkipped()) return;
    auto s = kind() == HelperKind::fork ? SpawnService::start() : SpawnService::start(PLUME_SPAWN_PATH);
    ASSERT_TRUE(s.ok()) << s.error().message();
    service_ = std::move(*s);
  }
  void TearDown() override {
    service_.reset();
    SpawnTest::TearDown();
  }
  // Waits (5 s at most) for answer_fd(), then lets the service read it.
  void answers() {
    pollfd p{service_->answer_fd(), POLLIN, 0};
    ASSERT_EQ(::poll(&p, 1, 5000), 1) << "nothing on answer_fd within 5 s";
    service_->on_answers();
  }
  std::unique_ptr<SpawnService> service_;
};

// What holds for both kinds of helper.
class SpawnServiceTest : public SpawnServiceFixture, public ::testing::WithParamInterface<HelperKind> {
 protected:
  HelperKind kind() const override { return GetParam(); }
};

class ForkedHelperTest : public SpawnServiceFixture {
 protected:
  HelperKind kind() const override { return HelperKind::fork; }
};

class ExecedHelperTest : public SpawnServiceFixture {
 protected:
  HelperKind kind() const override { return HelperKind::exec; }
};

TEST_P(SpawnServiceTest, AWorkerItClonesIsTheCallersChildInItsSandbox) {
  const int zombies = zombie_children();
  auto w = start(make_spec({"sh", "-c", "read line; exit 7"}), default_limits(), service_.get());
  ASSERT_TRUE(w.ok()) << w.error().message();
  EXPECT_EQ(proc_status_field(w->proc.pid, "PPid"), std::to_string(::getpid()));
  // The helper wrote its id maps and the pipeline ran: the tenant's id from here, pid 1 there.
  EXPECT_EQ(proc_status_field(w->proc.pid, "Uid"), std::to_string(kHostId));
  EXPECT_EQ(proc_status_field(w->proc.pid, "NoNewPrivs"), "1");
  EXPECT_EQ(proc_status_field(w->proc.pid, "Seccomp"), "2");
  w->in.reset();
  auto exit = w->wait();
  ASSERT_TRUE(exit.has_value());
  EXPECT_TRUE(exit->exited);
  EXPECT_EQ(exit->code, 7);
  EXPECT_EQ(zombie_children(), zombies);
}

TEST_P(SpawnServiceTest, AStepThatFailsInTheWorkerIsReportedAsBySpawn) {
  const int zombies = zombie_children();
  auto w = start(make_spec({"/nonexistent/plume-binary"}), default_limits(), service_.get());
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.error().step, Step::execve);
  EXPECT_EQ(w.error().err, ENOENT);
  EXPECT_NE(w.error().message().find("execve /nonexistent/plume-binary"), std::string::npos)
      << w.error().message();
  EXPECT_EQ(zombie_children(), zombies);
}

TEST_P(SpawnServiceTest, AStepThatFailsInTheHelperIsReportedAndItsChildReapedByTheCaller) {
  const int zombies = zombie_children();
  SandboxSpec spec = make_spec({"true"});
  spec.cgroup_procs_files = {"/nonexistent-plume-cgroup/cgroup.procs"};
  auto p = service_->spawn(spec);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.error().step, Step::cgroup_attach);
  EXPECT_EQ(p.error().err, ENOENT);
  // The helper killed the child it had cloned, ours by CLONE_PARENT; the service reaped it.
  EXPECT_EQ(zombie_children(), zombies);
  EXPECT_TRUE(service_->helper_alive());
}

TEST_P(SpawnServiceTest, AHardLimitTheCallerMayRaiseIsLentToTheWorker) {
  rlimit own{};
  ASSERT_EQ(::getrlimit(RLIMIT_NICE, &own), 0);
  if (own.rlim_max >= 20) GTEST_SKIP() << "RLIMIT_NICE is already 20 here: nothing to lend";
  // Raising a hard limit takes CAP_SYS_RESOURCE, which some hosts withhold even from root; the
  // helper, a fork of ours, has what we have.
  const rlimit raised{own.rlim_cur, 20};
  const bool can_raise = ::setrlimit(RLIMIT_NICE, &raised) == 0;
  if (can_raise) {
    ASSERT_EQ(::setrlimit(RLIMIT_NICE, &own), 0);
  }
  SandboxSpec spec = make_spec({"sh", "-c", "read line"});
  spec.rlimits.push_back({RLIMIT_NICE, 20, 20});
  // In a user namespace of its own the worker can only lower its limits: unlent, setrlimit
  // fails, and the spawn with it, by name.
  auto w = start(spec, default_limits(), service_.get());
  if (!can_raise) {
    ASSERT_FALSE(w.ok());
    EXPECT_EQ(w.error().step, Step::rlimits);
    EXPECT_EQ(w.error().err, EPERM);
    EXPECT_NE(w.error().message().find("RLIMIT_NICE"), std::string::npos) << w.error().message();
    return;
  }
  ASSERT_TRUE(w.ok()) << w.error().message();
  const std::string line = limits_line(w->proc.pid, "Max nice priority");
  EXPECT_NE(line.find(" 20 "), std::string::npos) << line;
  // Lent for the clone only: the helper's own limit is back.
  const std::string helper_line = limits_line(service_->helper_pid(), "Max nice priority");
  EXPECT_EQ(helper_line, limits_line(::getpid(), "Max nice priority"));
  w->in.reset();
  EXPECT_TRUE(w->wait().has_value());
}

TEST_P(SpawnServiceTest, TheHelperHoldsNoDescriptorButStdioAndItsSockets) {
  // Descriptors this process opens: none reaches the helper (it closed all it inherited).
  UniqueFd mine(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  std::set<std::string> fds;
  DIR* dir = ::opendir(("/proc/" + std::to_string(service_->helper_pid()) + "/fd").c_str());
  ASSERT_NE(dir, nullptr);
  while (dirent* e = ::readdir(dir)) {
    if (e->d_name[0] != '.') fds.insert(e->d_name);
  }
  ::closedir(dir);
  EXPECT_EQ(fds.count("3"), 1u);
  EXPECT_EQ(fds.count("4"), 1u);
  for (const std::string& fd : fds) EXPECT_TRUE(fd == "0" || fd == "1" || fd == "2" || fd == "3" || fd == "4") << fd;
}

TEST_P(SpawnServiceTest, WhatTheCallerMapsLaterIsNotCopiedByTheHelper) {
  const std::string helper_maps = "/proc/" + std::to_string(service_->helper_pid()) + "/maps";
  const size_t helper_before = line_count(helper_maps);
  const size_t ours_before = line_count("/proc/self/maps");
  // 400 mappings that cannot merge (alternating protections), as plumed's channels would be.
  std::vector<void*> maps;
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  void* area = ::mmap(nullptr, page * 800, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(area, MAP_FAILED);
  for (size_t i = 0; i < 800; i += 2) {
    ASSERT_EQ(::mprotect(static_cast<char*>(area) + i * page, page, PROT_READ | PROT_WRITE), 0);
  }
  EXPECT_GE(line_count("/proc/self/maps"), ours_before + 400);
  auto w = start(make_spec({"sh", "-c", "exit 0"}), default_limits(), service_.get());
  ASSERT_TRUE(w.ok()) << w.error().message();
  // The helper's own allocations may add a few mappings (more under ASan); never our 400.
  EXPECT_LT(line_count(helper_maps), helper_before + 40);
  EXPECT_TRUE(w->wait().has_value());
  ::munmap(area, page * 800);
}

TEST_P(SpawnServiceTest, AfterTheHelperIsKilledTheCallerSpawnsByItself) {
  UniqueFd helper(static_cast<int>(::syscall(SYS_pidfd_open, service_->helper_pid(), 0)));
  ASSERT_TRUE(helper);
  ASSERT_EQ(::syscall(SYS_pidfd_send_signal, helper.get(), SIGKILL, nullptr, 0), 0);
  ASSERT_TRUE(exits_within(helper.get(), 5000));
  auto w = start(make_spec({"sh", "-c", "exit 3"}), default_limits(), service_.get());
  ASSERT_TRUE(w.ok()) << w.error().message();
  EXPECT_FALSE(service_->helper_alive());
  EXPECT_EQ(proc_status_field(w->proc.pid, "PPid"), std::to_string(::getpid()));
  auto exit = w->wait();
  ASSERT_TRUE(exit.has_value());
  EXPECT_EQ(exit->code, 3);
}

// spawn_async: nothing waits; the answers come through answer_fd(), in request order.
TEST_P(SpawnServiceTest, AsynchronousSpawnsAreAnsweredInOrderThroughTheAnswerFd) {
  UniqueFd devnull(::open("/dev/null", O_RDWR | O_CLOEXEC));
  ASSERT_TRUE(devnull);
  std::vector<int> answered;
  std::vector<Process> procs;
  for (int code : {1, 2, 3}) {
    SandboxSpec spec = make_spec({"sh", "-c", "exit " + std::to_string(code)});
    spec.granted_fds = {devnull.get(), devnull.get(), devnull.get()};
    auto sent = service_->spawn_async(spec, [&, code](Result<Process, SpawnError> p) {
      answered.push_back(code);
      auto ran = wait_for_exec(std::move(p));
      ASSERT_TRUE(ran.ok()) << ran.error().message();
      procs.push_back(std::move(*ran));
    });
    EXPECT_FALSE(sent.answered.has_value()) << "answered without the helper";
    EXPECT_NE(sent.ticket, 0u);
  }
  EXPECT_EQ(service_->pending(), 3u);
  EXPECT_TRUE(answered.empty()) << "an answer ran before the loop asked for it";
  while (service_->pending() > 0) {
    pollfd p{service_->answer_fd(), POLLIN, 0};
    ASSERT_EQ(::poll(&p, 1, 5000), 1) << "no answer within 5 s";
    service_->on_answers();
  }
  EXPECT_EQ(answered, (std::vector<int>{1, 2, 3}));
  ASSERT_EQ(procs.size(), 3u);
  for (size_t i = 0; i < procs.size(); ++i) {
    auto exit = reap(procs[i].pidfd.get(), /*block=*/true);
    ASSERT_TRUE(exit.ok()) << exit.error().message();  // ours to reap: our child
    EXPECT_EQ(exit->code, static_cast<int>(i) + 1);
  }
}

TEST_F(ForkedHelperTest, RequestsTheHelperDiesWithFailAndTheNextRunInTheCaller) {
  UniqueFd helper(static_cast<int>(::syscall(SYS_pidfd_open, service_->helper_pid(), 0)));
  ASSERT_TRUE(helper);
  // Stopped, it cannot read the request; killed, it never will.
  ASSERT_EQ(::syscall(SYS_pidfd_send_signal, helper.get(), SIGSTOP, nullptr, 0), 0);
  SandboxSpec spec = make_spec({"sh", "-c", "exit 5"});
  std::optional<Result<Process, SpawnError>> first;
  auto sent = service_->spawn_async(spec, [&](Result<Process, SpawnError> p) { first.emplace(std::move(p)); });
  ASSERT_FALSE(sent.answered.has_value());
  ASSERT_EQ(service_->pending(), 1u);
  ASSERT_EQ(::syscall(SYS_pidfd_send_signal, helper.get(), SIGKILL, nullptr, 0), 0);
  ASSERT_TRUE(exits_within(helper.get(), 5000));
  pollfd p{service_->answer_fd(), POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 5000), 1) << "the helper's end did not show on answer_fd";
  service_->on_answers();
  ASSERT_TRUE(first.has_value());
  ASSERT_FALSE(first->ok());
  EXPECT_NE(first->error().message().find("spawn helper"), std::string::npos) << first->error().message();
  EXPECT_TRUE(service_->gone());
  EXPECT_EQ(service_->pending(), 0u);
  // From now on the caller spawns by itself, and says so at once (never through `done`).
  bool done_ran = false;
  auto next = service_->spawn_async(spec, [&](Result<Process, SpawnError>) { done_ran = true; });
  ASSERT_TRUE(next.answered.has_value()) << "after the helper's death the answer is immediate";
  EXPECT_FALSE(done_ran);
  auto ran = wait_for_exec(std::move(*next.answered));
  ASSERT_TRUE(ran.ok()) << ran.error().message();
  auto exit = reap(ran->pidfd.get(), /*block=*/true);
  ASSERT_TRUE(exit.ok());
  EXPECT_EQ(exit->code, 5);
}

TEST_P(SpawnServiceTest, TheHelperEndsWithTheService) {
  UniqueFd helper(static_cast<int>(::syscall(SYS_pidfd_open, service_->helper_pid(), 0)));
  ASSERT_TRUE(helper);
  service_.reset();
  EXPECT_TRUE(exits_within(helper.get(), 0)) << "the service returned before its helper had exited";
}

// Kills the helper and waits for its end.
void kill_helper(pid_t pid) {
  UniqueFd helper(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  ASSERT_TRUE(helper);
  ASSERT_EQ(::syscall(SYS_pidfd_send_signal, helper.get(), SIGKILL, nullptr, 0), 0);
  ASSERT_TRUE(exits_within(helper.get(), 5000));
}

// A request the helper dies in the middle of: what it had cloned is the caller's child
// (CLONE_PARENT), which the caller holds no pidfd for. The service finds it in the helper's ledger
// and reaps it, rather than leave a zombie nobody could wait for.
TEST_P(SpawnServiceTest, WhatADeadHelperHadClonedIsReaped) {
  const int zombies = zombie_children();
  const std::string fifo = "/tmp/plume-spawn-test-" + std::to_string(::getpid()) + ".fifo";
  ::unlink(fifo.c_str());
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  SandboxSpec spec = make_spec({"true"});
  spec.cgroup_procs_files = {fifo};  // opening it for the attach blocks: the child is cloned by then
  std::optional<Result<Process, SpawnError>> outcome;
  auto sent = service_->spawn_async(spec, [&](Result<Process, SpawnError> p) { outcome.emplace(std::move(p)); });
  ASSERT_FALSE(sent.answered.has_value());
  const pid_t helper = service_->helper_pid();
  pid_t cloned = 0;
  for (int i = 0; i < 500 && cloned == 0; ++i) {  // bounded: 5 s
    for (const plume::test::ChildProcess& c : plume::test::children_of(::getpid())) {
      if (c.comm == "plume-spawn" && c.pid != helper) cloned = c.pid;
    }
    if (cloned == 0) ::poll(nullptr, 0, 10);
  }
  ASSERT_GT(cloned, 0) << "the helper's clone never showed";
  // The clone shows before the helper has noted its pid: wait until it blocks opening the FIFO.
  auto in_openat = [&] {
    std::ifstream in("/proc/" + std::to_string(helper) + "/syscall");
    long nr = -1;
    in >> nr;
    return nr == SYS_openat;
  };
  for (int i = 0; i < 500 && !in_openat(); ++i) ::poll(nullptr, 0, 10);  // bounded: 5 s
  ASSERT_TRUE(in_openat()) << "the helper never blocked opening the FIFO";
  kill_helper(helper);
  if (HasFatalFailure()) return;
  answers();
  ::unlink(fifo.c_str());
  ASSERT_TRUE(outcome.has_value());
  EXPECT_FALSE(outcome->ok());
  EXPECT_EQ(service_->orphans_reaped(), 1);
  for (const plume::test::ChildProcess& c : plume::test::children_of(::getpid()))
    EXPECT_NE(c.pid, cloned) << "still there, state " << c.state;
  EXPECT_EQ(zombie_children(), zombies);
}

INSTANTIATE_TEST_SUITE_P(Helpers, SpawnServiceTest, ::testing::Values(HelperKind::fork, HelperKind::exec),
                         [](const auto& p) { return p.param == HelperKind::fork ? "Forked" : "Execed"; });

// An exec'd helper that dies is replaced from on_answers(): the requests it died with fail, a
// `done` that asks again reaches the new helper, and so does everything after.
TEST_F(ExecedHelperTest, ADeadHelperIsReplacedAndItsUnansweredRequestsFail) {
  const pid_t first_helper = service_->helper_pid();
  UniqueFd helper(static_cast<int>(::syscall(SYS_pidfd_open, first_helper, 0)));
  ASSERT_TRUE(helper);
  ASSERT_EQ(::syscall(SYS_pidfd_send_signal, helper.get(), SIGSTOP, nullptr, 0), 0);
  std::optional<Result<Process, SpawnError>> first, retried;
  std::optional<SpawnService::Sent> retry;
  const SandboxSpec spec = make_spec({"sh", "-c", "exit 6"});
  auto sent = service_->spawn_async(spec, [&](Result<Process, SpawnError> p) {
    first.emplace(std::move(p));
    retry = service_->spawn_async(spec, [&](Result<Process, SpawnError> q) { retried.emplace(std::move(q)); });
  });
  ASSERT_FALSE(sent.answered.has_value());
  ASSERT_EQ(::syscall(SYS_pidfd_send_signal, helper.get(), SIGKILL, nullptr, 0), 0);
  ASSERT_TRUE(exits_within(helper.get(), 5000));
  answers();
  ASSERT_TRUE(first.has_value());
  ASSERT_FALSE(first->ok());
  EXPECT_NE(first->error().message().find("spawn helper died"), std::string::npos) << first->error().message();
  EXPECT_FALSE(service_->gone());
  EXPECT_EQ(service_->restarts(), 1);
  EXPECT_NE(service_->helper_pid(), first_helper);
  EXPECT_TRUE(service_->helper_alive());
  EXPECT_EQ(proc_status_field(service_->helper_pid(), "PPid"), std::to_string(::getpid()));
  // The retry went to the new helper: it waits for its answer.
  ASSERT_TRUE(retry.has_value());
  EXPECT_FALSE(retry->answered.has_value()) << "the retry did not reach the new helper";
  EXPECT_EQ(service_->pending(), 1u);
  answers();
  ASSERT_TRUE(retried.has_value());
  auto ran = wait_for_exec(std::move(*retried));
  ASSERT_TRUE(ran.ok()) << ran.error().message();
  auto exit = reap(ran->pidfd.get(), /*block=*/true);  // ours: the new helper clones with CLONE_PARENT
  ASSERT_TRUE(exit.ok()) << exit.error().message();
  EXPECT_EQ(exit->code, 6);
}

// A helper that dies soon after each start is not started for ever: after kMaxQuickDeaths in a
// row the caller spawns by itself, as with a forked helper.
TEST_F(ExecedHelperTest, HelpersThatKeepDyingAreGivenUpOn) {
  for (int death = 1; death <= SpawnService::kMaxQuickDeaths; ++death) {
    ASSERT_FALSE(service_->gone());
    kill_helper(service_->helper_pid());
    if (HasFatalFailure()) return;
    answers();
    EXPECT_EQ(service_->restarts(), std::min(death, SpawnService::kMaxQuickDeaths - 1));
  }
  EXPECT_TRUE(service_->gone());
  EXPECT_FALSE(service_->helper_alive());
  const SandboxSpec spec = make_spec({"sh", "-c", "exit 2"});
  auto next = service_->spawn_async(spec, [](Result<Process, SpawnError>) { FAIL() << "answered later"; });
  ASSERT_TRUE(next.answered.has_value()) << "with no helper the answer is immediate";
  auto ran = wait_for_exec(std::move(*next.answered));
  ASSERT_TRUE(ran.ok()) << ran.error().message();
  auto exit = reap(ran->pidfd.get(), /*block=*/true);
  ASSERT_TRUE(exit.ok());
  EXPECT_EQ(exit->code, 2);
}

// A helper whose binary is gone by the time it dies cannot be replaced: the service says so and
// spawns in its caller from then on.
TEST_F(ExecedHelperTest, AHelperThatCannotBeReplacedLeavesTheCallerSpawningByItself) {
  const std::string copy = "/tmp/plume-spawn-test-" + std::to_string(::getpid());
  std::filesystem::copy_file(PLUME_SPAWN_PATH, copy, std::filesystem::copy_options::overwrite_existing);
  auto s = SpawnService::start(copy);
  ASSERT_TRUE(s.ok()) << s.error().message();
  service_ = std::move(*s);
  ASSERT_EQ(::unlink(copy.c_str()), 0);
  kill_helper(service_->helper_pid());
  if (HasFatalFailure()) return;
  answers();
  EXPECT_TRUE(service_->gone());
  EXPECT_EQ(service_->restarts(), 0);
  auto w = start(make_spec({"sh", "-c", "exit 8"}), default_limits(), service_.get());
  ASSERT_TRUE(w.ok()) << w.error().message();
  auto exit = w->wait();
  ASSERT_TRUE(exit.has_value());
  EXPECT_EQ(exit->code, 8);
}

// A binary that is not a helper never says it is ready: refused by name, nothing left behind.
TEST_F(ExecedHelperTest, ABinaryThatIsNotAHelperIsRefused) {
  const int zombies = zombie_children();
  auto s = SpawnService::start("/bin/true");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message().find("the spawn helper's first record"), std::string::npos) << s.error().message();
  auto missing = SpawnService::start("/nonexistent/plume-spawn");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().err, ENOENT) << missing.error().message();
  EXPECT_EQ(zombie_children(), zombies);
}

}  // namespace
}  // namespace plume::fwp::test
