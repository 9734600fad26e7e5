// The featherweight-process fast path, end to end: real templates in real namespaces, instances
// forked from them and started from warm pools, their sandbox, their exits and their isolation.
#include <linux/io_uring.h>
#include <sched.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>

#include "fwp_fast/fast_fixture.h"

namespace plume::fwp::test {
namespace {

// "Seccomp_filters:" of /proc/<pid>/status: how many filters the process runs under.
int seccomp_filters(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("Seccomp_filters:", 0) == 0) return std::stoi(line.substr(16));
  }
  return -1;
}

// Whether this kernel's Landlock has scopes (ABI 6+); without them the template falls back to the
// per-instance seccomp filter, which the fence tests then expect instead.
bool landlock_has_scopes() {
  const long abi = ::syscall(SYS_landlock_create_ruleset, nullptr, 0, 1u /* _VERSION */);
  return abi >= 6;
}

std::string host_ns(const char* ns) {
  char target[128] = {};
  const std::string link = std::string("/proc/self/ns/") + ns;
  (void)!::readlink(link.c_str(), target, sizeof target - 1);
  return target;
}

TEST_F(FastTest, EchoRoundTripOnTemplateFork) {
  Template& t = start(make_spec(echo_path()));
  Instance& inst = start_instance("hello");
  EXPECT_EQ(inst.path(), StartPath::fork);
  EXPECT_EQ(reply(inst), "hello");
  EXPECT_EQ(ask(inst, "again"), "again");
  EXPECT_EQ(ask(inst, ""), "<exited>");
  const InstanceExit& e = wait_exit(inst);
  EXPECT_EQ(e.cause, ExitCause::exit);
  EXPECT_EQ(e.code, 0);
  EXPECT_EQ(t.stats().pool_misses, 1u);
  EXPECT_EQ(exited_.size(), 1u);
}

// Channels are made ahead (refill_delay after a start), so a start only takes one. A burst that
// uses them all up makes a start create its own, and the template then keeps more made ahead.
TEST_F(FastTest, ABurstOfStartsGrowsTheChannelsMadeAhead) {
  Template& t = start_echo_with_spare_channels(20ms);
  ASSERT_EQ(t.spare_channels(), t.spare_channel_target());
  const size_t ahead = t.spare_channel_target();
  ASSERT_GT(ahead, 0u);
  // No loop turn between these starts: nothing is made ahead meanwhile.
  std::vector<Instance*> started;
  for (size_t i = 0; i < ahead + 2; ++i) started.push_back(&start_instance("a"));
  EXPECT_EQ(t.stats().channels_made_on_demand, 2u);
  EXPECT_EQ(t.spare_channel_target(), 4 * ahead);  // doubled by each of the two
  ASSERT_TRUE(run_until([&] { return t.spare_channels() == t.spare_channel_target(); }));
  // The same burst again finds a channel made ahead for every start.
  for (size_t i = 0; i < ahead + 2; ++i) started.push_back(&start_instance("b"));
  EXPECT_EQ(t.stats().channels_made_on_demand, 2u);
  for (size_t i = 0; i < started.size(); ++i) {
    EXPECT_EQ(reply(*started[i]), i < ahead + 2 ? "a" : "b");
    EXPECT_EQ(ask(*started[i], ""), "<exited>");
  }
  for (Instance* inst : started) EXPECT_EQ(wait_exit(*inst).cause, ExitCause::exit);
}

// The channels the template holds staged (template_protocol.h): memfds in its fd table.
size_t staged_memfds(pid_t template_pid) {
  size_t n = 0;
  const std::string dir = "/proc/" + std::to_string(template_pid) + "/fd";
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    std::error_code link_ec;
    const auto target = std::filesystem::read_symlink(e.path(), link_ec);
    if (!link_ec && target.string().find("plume-channel") != std::string::npos) ++n;
  }
  return n;
}

// ... and once starts slow down, it keeps fewer again, and the template drops the rest.
TEST_F(FastTest, AQuietTemplateShrinksTheChannelsMadeAheadAndTheTemplateDropsThem) {
  Template& t = start_echo_with_spare_channels(20ms);
  ASSERT_EQ(t.spare_channels(), t.spare_channel_target());
  const size_t minimum = t.spare_channel_target();
  std::vector<Instance*> started;
  for (size_t i = 0; i < minimum + 2; ++i) started.push_back(&start_instance("a"));
  ASSERT_EQ(t.spare_channel_target(), 4 * minimum);
  // No more starts: back to the minimum one refill_delay later (too soon to watch the template
  // hold all 16), and the rest unstaged (without that, the template would keep all 16).
  EXPECT_TRUE(run_until([&] { return t.spare_channel_target() == minimum; }));
  EXPECT_EQ(t.spare_channels(), minimum);
  EXPECT_TRUE(run_until([&] { return staged_memfds(t.template_pid()) == minimum; }));
  EXPECT_EQ(t.stats().protocol_errors, 0u);
  // And the spares left still serve starts.
  started.push_back(&start_instance("b"));
  EXPECT_EQ(t.stats().channels_made_on_demand, 2u);
  for (size_t i = 0; i < started.size(); ++i) {
    EXPECT_EQ(reply(*started[i]), i + 1 < started.size() ? "a" : "b");
    EXPECT_EQ(ask(*started[i], ""), "<exited>");
  }
}

TEST_F(FastTest, InstanceRunsInTheFullSandboxAndItsOwnCgroup) {
  TemplateSpec spec = make_spec(probe_path());
  spec.cgroup_mode = InstanceCgroups::own;
  spec.instance_limits.memory_bytes = 64 << 20;
  start(std::move(spec));
  Instance& inst = start_instance("status");
  const std::string st = reply(inst);
  EXPECT_EQ(field(st, "Seccomp:"), "2") << st;
  EXPECT_EQ(field(st, "NoNewPrivs:"), "1") << st;
  EXPECT_EQ(field(st, "CapEff:"), "0000000000000000") << st;
  EXPECT_EQ(field(st, "CapPrm:"), "0000000000000000") << st;
  EXPECT_EQ(field(st, "CapBnd:"), "0000000000000000") << st;
  for (const char* ns : {"pid", "mnt", "user", "net", "uts", "ipc"}) {
    const std::string mine = field(st, std::string("ns_") + ns + ":");
    EXPECT_NE(mine, host_ns(ns)) << ns;
    EXPECT_EQ(mine.rfind(ns, 0), 0u) << st;
  }
  // Its own cgroup (the memory controller's on v1), as the instance itself sees it: the pid is
  // placed there from the controller's side.
  ASSERT_FALSE(inst.cgroup().empty());
  const std::string leaf = inst.cgroup().substr(inst.cgroup().rfind('/') + 1);
  const std::string seen =
      field(st, cgroups().version() == CgroupVersion::v2 ? "cgroup_unified:" : "cgroup_memory:");
  EXPECT_TRUE(seen.size() > leaf.size() && seen.compare(seen.size() - leaf.size() - 1, std::string::npos, "/" + leaf) == 0)
      << "instance cgroup " << inst.cgroup() << ", seen from inside: " << st;
  auto procs = cgroups().processes(inst.cgroup());
  EXPECT_EQ(procs, std::vector<pid_t>{inst.pid()});
}

TEST_F(FastTest, WarmPoolStartIsADoorbellAndThePoolRefills) {
  TemplateSpec spec = make_spec(probe_path());
  spec.pool_size = 3;
  Template& t = start(std::move(spec));
  ASSERT_TRUE(run_until([&] { return t.pool_ready() == 3; }));
  EXPECT_EQ(t.stats().forks, 3u);
  std::set<pid_t> parked;
  for (uint64_t id = 1; id <= 3; ++id) parked.insert(t.instance(id)->pid());
  Instance& inst = start_instance("ids");
  // Taken from the pool: one of the parked processes, no new process for this start.
  EXPECT_EQ(inst.path(), StartPath::pool);
  EXPECT_TRUE(parked.count(inst.pid())) << inst.pid();
  EXPECT_EQ(t.pool_parked(), 2u);
  EXPECT_EQ(t.stats().pool_hits, 1u);
  EXPECT_EQ(t.stats().pool_misses, 0u);
  // Refills are background work: the template forks at nice 10, the instance runs at nice 0.
  const std::string ids = reply(inst);
  EXPECT_EQ(field(ids, "nice="), "0") << ids;
  // (Only where plumed may raise RLIMIT_NICE, i.e. holds CAP_SYS_RESOURCE; else it stays at 0.)
  EXPECT_EQ(::getpriority(PRIO_PROCESS, static_cast<id_t>(t.template_pid())), nice_limit_lendable() ? 10 : 0);
  ASSERT_TRUE(run_until([&] { return t.pool_ready() == 3; }));
  EXPECT_EQ(t.stats().forks, 4u);
}

// The CPUs in `set`, as the probe's `cpus=` lists them ("0,1").
std::string cpu_list(const cpu_set_t& set) {
  std::string out;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu)
    if (CPU_ISSET(cpu, &set)) out += (out.empty() ? "" : ",") + std::to_string(cpu);
  return out;
}

// Steered wake-ups without a sched_setaffinity on the start path: a pool instance parks pinned to
// the CPU its refill was sent from, and widens its mask back to the template's before its handler.
TEST_F(FastTest, APoolInstanceParksOnTheSupervisorsCpuAndRunsWithTheTemplatesCpus) {
  cpu_set_t mine;
  ASSERT_EQ(::sched_getaffinity(0, sizeof mine, &mine), 0);
  if (CPU_COUNT(&mine) < 2) GTEST_SKIP() << "needs two CPUs";
  TemplateSpec spec = make_spec(probe_path());
  spec.pool_size = 1;
  spec.refill_delay = 1ms;
  Template& t = start(std::move(spec));
  ASSERT_TRUE(run_until([&] { return t.pool_ready() == 1; }));
  cpu_set_t template_cpus;
  ASSERT_EQ(::sched_getaffinity(t.template_pid(), sizeof template_cpus, &template_cpus), 0);
  ASSERT_GE(CPU_COUNT(&template_cpus), 2);
  // The loop (this thread) moves to another of the template's CPUs, so that the refill after this
  // start goes out from there.
  Instance& first = start_instance("ids");
  int here = -1;
  for (int cpu = 0; cpu < CPU_SETSIZE && here < 0; ++cpu)
    if (CPU_ISSET(cpu, &template_cpus) && CPU_ISSET(cpu, &mine) && cpu != ::sched_getcpu()) here = cpu;
  ASSERT_GE(here, 0);
  cpu_set_t only_here;
  CPU_ZERO(&only_here);
  CPU_SET(here, &only_here);
  ASSERT_EQ(::sched_setaffinity(0, sizeof only_here, &only_here), 0);
  struct RestoreMask {
    cpu_set_t mask;
    ~RestoreMask() { (void)::sched_setaffinity(0, sizeof mask, &mask); }
  } restore{mine};
  EXPECT_EQ(field(reply(first), "cpus="), cpu_list(template_cpus));  // steered, then widened
  ASSERT_TRUE(run_until([&] { return t.pool_ready() == 1; }));
  const Instance* parked = t.parked().at(0);
  cpu_set_t parked_cpus;
  ASSERT_EQ(::sched_getaffinity(parked->pid(), sizeof parked_cpus, &parked_cpus), 0);
  EXPECT_EQ(cpu_list(parked_cpus), std::to_string(here));
  // Started from this CPU: no steering needed, and its handler runs on the template's CPUs.
  Instance& second = start_instance("ids");
  EXPECT_EQ(second.pid(), parked->pid());
  EXPECT_EQ(field(reply(second), "cpus="), cpu_list(template_cpus));
}

TEST_F(FastTest, EmptyPoolFallsBackToTemplateFork) {
  TemplateSpec spec = make_spec(probe_path());
  spec.pool_size = 1;
  Template& t = start(std::move(spec));
  ASSERT_TRUE(run_until([&] { return t.pool_ready() == 1; }));
  Instance& a = start_instance("ids");
  Instance& b = start_instance("ids");  // the pool is empty now (its refill is in flight)
  EXPECT_EQ(a.path(), StartPath::pool);
  EXPECT_EQ(b.path(), StartPath::fork);
  EXPECT_NE(reply(a).find("init_count=1"), std::string::npos);
  EXPECT_NE(reply(b).find("init_count=1"), std::string::npos);
  EXPECT_EQ(t.stats().pool_misses, 1u);
}

// Every page an instance writes between fork() and its handler is a copy-on-write fault (several
// µs each here): the kernel's few (the child's tid, glibc's fork bookkeeping), the stack page
// fork() returns on, the vDSO and the channel. A global written by libplume, a frame wide enough
// to reach another stack page, or a call that dives deep (glibc's sysconf) shows up here.
class ForkFaultsTest : public FastTest {
 protected:
  // Three instances of `app` forked for `command`, each replying "minflt=<n>" (its page faults
  // as its handler began) and then told to end: n is at most `most` each time.
  void expect_at_most(const std::string& app, const std::string& command, long most) {
    start(make_spec(app));
    for (int i = 0; i < 3; ++i) {
      Instance& inst = start_instance(command);
      ASSERT_EQ(inst.path(), StartPath::fork);
      const std::string r = reply(inst);
      ASSERT_EQ(r.rfind("minflt=", 0), 0u) << r;
      EXPECT_LE(std::stol(r.substr(7)), most) << "page faults between fork() and the handler";
      EXPECT_EQ(ask(inst, ""), "<exited>");
      wait_exit(inst);
    }
  }
};

TEST_F(ForkFaultsTest, AForkedInstanceReachesItsHandlerInAFewPageFaults) {
  expect_at_most(probe_path(), "faults", 7);
}

// The same with the smallest handler, whose own frame adds no stack page: a template loop whose
// frame grew (an inlined buffer once made it 768 bytes deeper) pushes every instance's stack a
// page further, which only a handler this small shows (the probe's reaches that page anyway).
TEST_F(ForkFaultsTest, TheTemplatesFramesLeaveASmallHandlerOnTheStackPageForkReturnsOn) {
  expect_at_most(PLUME_TINY_PATH, "x", 6);
}

bool transparent_huge_pages() {
  std::ifstream thp("/sys/kernel/mm/transparent_hugepage/enabled");
  std::string setting;
  std::getline(thp, setting);
  return !setting.empty() && setting.find("[never]") == std::string::npos;
}

// What a pooled and a forked instance of a template with `huge_text` say of their code mapping.
class HugeTextTest : public FastTest {
 protected:
  std::pair<std::string, std::string> code_mappings(bool huge_text) {
    TemplateSpec spec = make_spec(probe_path());
    spec.pool_size = 1;
    spec.huge_text = huge_text;
    Template& t = start(std::move(spec));
    EXPECT_TRUE(run_until([&] { return t.pool_ready() == 1; }));
    Instance& pooled = start_instance("text");
    Instance& forked = start_instance("text");
    EXPECT_EQ(pooled.path(), StartPath::pool);
    EXPECT_EQ(forked.path(), StartPath::fork);
    EXPECT_EQ(t.stats().text_on_huge_pages, huge_text);  // what the template's hello said
    return {reply(pooled), reply(forked)};
  }
};

// With huge_text the template moves its code (linked on 2 MiB boundaries by plume_add_app) onto
// a transparent huge page; a fork copies it as one entry, and every instance runs on it.
TEST_F(HugeTextTest, InstancesRunOnTheTemplatesCodeOnAHugePage) {
  if (!transparent_huge_pages()) GTEST_SKIP() << "no transparent huge pages on this host";
  const auto [pooled, forked] = code_mappings(true);
  EXPECT_EQ(pooled, "huge_kb=2048 file=0");
  EXPECT_EQ(forked, "huge_kb=2048 file=0");
}

// An app not linked on 2 MiB boundaries: the template says it could not, and works as without.
TEST_F(HugeTextTest, AnAppNotLinkedForItRunsWithoutIt) {
  TemplateSpec spec = make_spec(echo_path());
  spec.huge_text = true;
  Template& t = start(std::move(spec));
  EXPECT_FALSE(t.stats().text_on_huge_pages);
  Instance& inst = start_instance("hello");
  EXPECT_EQ(reply(inst), "hello");
}

TEST_F(HugeTextTest, WithoutItInstancesRunOnTheBinarysFilePages) {
  const auto [pooled, forked] = code_mappings(false);
  EXPECT_EQ(pooled, "huge_kb=0 file=1");
  EXPECT_EQ(forked, "huge_kb=0 file=1");
}

TEST_F(FastTest, ExitCrashOomAndKillAreReportedWithTheirCause) {
  TemplateSpec spec = make_spec(probe_path());
  spec.cgroup_mode = InstanceCgroups::own;
  spec.instance_limits.memory_bytes = 32 << 20;
  spec.pool_size = 2;
  start(std::move(spec));
  Instance& code = start_instance("exit 7");
  Instance& crash = start_instance("segv");
  Instance& oom = start_instance("oom");
  Instance& killed = start_instance("ids");
  EXPECT_NE(reply(killed).find("pid="), std::string::npos);
  ASSERT_TRUE(tmpl_->kill(killed.id(), SIGKILL).ok());

  EXPECT_EQ(wait_exit(code).cause, ExitCause::exit);
  EXPECT_EQ(code.exit()->code, 7);
  EXPECT_EQ(wait_exit(crash).cause, ExitCause::signal);
  EXPECT_EQ(crash.exit()->signal, SIGSEGV);
  EXPECT_EQ(wait_exit(oom, 20s).cause, ExitCause::oom);
  EXPECT_EQ(oom.exit()->signal, SIGKILL);
  EXPECT_GE(oom.exit()->memory_peak_bytes, 16u << 20);
  EXPECT_EQ(wait_exit(killed).cause, ExitCause::limit);
  EXPECT_EQ(exited_.size(), 4u);
}

TEST_F(FastTest, TemplateDeathRestartsItAndRunningInstancesSurvive) {
  TemplateSpec spec = make_spec(probe_path());
  spec.pool_size = 1;
  Template& t = start(std::move(spec));
  Instance& running = start_instance("ids");
  const std::string before = reply(running);
  ASSERT_NE(before.find("init_count=1"), std::string::npos) << before;
  ASSERT_TRUE(run_until([&] { return t.pool_ready() == 1; }));
  const pid_t old_template = t.template_pid();
  ASSERT_EQ(::syscall(SYS_pidfd_send_signal, t.template_pidfd(), SIGKILL, nullptr, 0), 0);
  ASSERT_TRUE(run_until([&] { return template_readies_ == 2 && t.ready(); })) << failed_;
  EXPECT_EQ(template_exits_, 1);
  EXPECT_EQ(t.stats().template_restarts, 1u);
  EXPECT_EQ(t.stats().generation, 2u);
  EXPECT_NE(t.template_pid(), old_template);
  // The running instance and the parked one are untouched; the keeper adopted them.
  const std::string after = ask(running, "ids");
  EXPECT_EQ(field(after, "pid="), field(before, "pid=")) << after;
  EXPECT_EQ(field(after, "init_pid="), field(before, "init_pid=")) << after;
  EXPECT_EQ(field(after, "ppid="), "1") << after;
  EXPECT_FALSE(running.exit().has_value());
  Instance& pooled = start_instance("ids");
  EXPECT_EQ(pooled.path(), StartPath::pool);
  EXPECT_NE(reply(pooled).find("init_count=1"), std::string::npos);
  // New forks come from the new template, with channels staged again for it.
  Instance& fresh = start_instance("ids");
  EXPECT_NE(reply(fresh).find("init_count=1"), std::string::npos);
  EXPECT_EQ(ask(fresh, "maps"), "1");
  // An instance orphaned by the old template still reports its exit (through the keeper).
  EXPECT_EQ(ask(running, "exit 5"), "<exited>");
  EXPECT_EQ(wait_exit(running).code, 5);
}

// Run for both fences (the per-instance seccomp filter, and the Landlock scope plumed picks for
// default-profile images without rings); each start_in runs its own template.
class FastIsolationTest : public FastTest, public ::testing::WithParamInterface<InstanceIsolation> {};

TEST_P(FastIsolationTest, InstanceCannotReachSiblingsOrTemplate) {
  TemplateSpec spec = make_spec(probe_path());
  spec.isolation = GetParam();
  start(std::move(spec));
  Instance& victim = start_instance("ids");
  Instance& attacker = start_instance("ids");
  const std::string victim_ids = reply(victim);
  const std::string attacker_ids = reply(attacker);
  const std::string victim_pid = field(victim_ids, "pid=");
  const std::string template_pid = field(attacker_ids, "ppid=");
  ASSERT_NE(victim_pid, template_pid);
  // The image's filter, plus the instance's own unless the Landlock domain fences it instead.
  const bool landlock = GetParam() == InstanceIsolation::landlock_scope && landlock_has_scopes();
  EXPECT_EQ(seccomp_filters(victim.pid()), landlock ? 1 : 2);
  for (const std::string& target : {victim_pid, template_pid}) {
    const std::string r = ask(attacker, "attack " + target);
    EXPECT_EQ(field(r, "vm="), std::to_string(EPERM)) << r;
    EXPECT_EQ(field(r, "ptrace="), std::to_string(EPERM)) << r;
    EXPECT_EQ(field(r, "kill="), std::to_string(EPERM)) << r;
    EXPECT_EQ(field(r, "mem="), std::to_string(EACCES)) << r;
  }
  // Same uid, same pid namespace: only the fence and non-dumpability stand between them.
  const std::string self = ask(attacker, "attack " + field(attacker_ids, "pid="));
  EXPECT_EQ(field(self, "kill="), "0") << self;
  EXPECT_EQ(ask(victim, "still here"), "still here");
}

TEST_P(FastIsolationTest, OnlyStdioSurvivesIntoAnInstance) {
  TemplateSpec spec = make_spec(probe_path());
  spec.isolation = GetParam();
  spec.pool_size = 1;
  Template& t = start(std::move(spec));
  ASSERT_TRUE(run_until([&] { return t.pool_ready() == 1; }));
  Instance& pooled = start_instance("fds");
  Instance& forked = start_instance("fds");
  EXPECT_EQ(reply(pooled), "0,1,2");
  EXPECT_EQ(reply(forked), "0,1,2");
  // Not even the one init left open, far above the template's own descriptors.
  EXPECT_EQ(ask(forked, "init_fd"), "200");
  // Nor any mapping of another instance's channel (the template premaps the next one's).
  EXPECT_EQ(ask(pooled, "maps"), "1");
  EXPECT_EQ(ask(forked, "maps"), "1");
}

// A start queued while the template starts (before its hello) and SIGKILLed there is ended from
// the loop, not inside kill(), and never forked: a tenant's removal or a worker's deletion need
// not wait for the template's init to kill it.
TEST_F(FastTest, AnInstanceKilledBeforeItsForkIsEndedWithoutOne) {
  Template::Events ev;
  ev.instance_exited = [this](Instance& i) { exited_.push_back(i.id()); };
  ev.failed = [this](const std::string& why) { failed_ = why; };
  auto t = Template::start(make_spec(probe_path()), loop_, ev);
  ASSERT_TRUE(t.ok()) << t.error().message();
  tmpl_ = std::move(*t);
  ASSERT_FALSE(tmpl_->ready());
  const std::string first = "ids";
  auto queued = tmpl_->start_instance(std::as_bytes(std::span(first.data(), first.size())));
  ASSERT_TRUE(queued.ok()) << queued.error().message();
  const uint64_t id = (*queued)->id();
  ASSERT_TRUE(tmpl_->kill(id, SIGKILL).ok());
  EXPECT_TRUE(exited_.empty()) << "ended inside kill()";
  ASSERT_TRUE(run_until([&] { return !exited_.empty(); }));
  ASSERT_EQ(exited_, std::vector<uint64_t>{id});
  ASSERT_TRUE(tmpl_->instance(id)->exit().has_value());
  EXPECT_EQ(tmpl_->instance(id)->exit()->cause, ExitCause::limit);
  EXPECT_EQ(tmpl_->instance(id)->exit()->signal, SIGKILL);
  ASSERT_TRUE(run_until([&] { return tmpl_->ready() || !failed_.empty(); }, 15s)) << "no hello";
  EXPECT_EQ(tmpl_->stats().forks, 0u) << "the killed start was forked after all";
  Instance& next = start_instance("ids");
  EXPECT_NE(reply(next), "<timeout>");
  EXPECT_EQ(tmpl_->stats().forks, 1u);
}

// The template is forked by its keeper: it keeps the stdio and control socket they share, and
// none of the keeper's own descriptors (its signalfd was once left open in every template).
TEST_F(FastTest, TheTemplateHoldsNoneOfItsKeepersDescriptors) {
  Template& t = start(make_spec(probe_path()));
  // One instance served: the template is in its loop, its own signalfd made (after its hello).
  Instance& served = start_instance("ids");
  ASSERT_NE(reply(served), "<timeout>");
  std::map<std::string, int> kinds;
  const std::string dir = "/proc/" + std::to_string(t.template_pid()) + "/fd";
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    std::error_code ec;
    const auto target = std::filesystem::read_symlink(entry.path(), ec);
    if (!ec) ++kinds[target.string()];
  }
  EXPECT_EQ(kinds["anon_inode:[signalfd]"], 1) << "the template's own only";
}

INSTANTIATE_TEST_SUITE_P(Fences, FastIsolationTest,
                         ::testing::Values(InstanceIsolation::seccomp_filter, InstanceIsolation::landlock_scope),
                         fence_name);

TEST_F(FastTest, IoUringIsRestrictedToTheImagesOpcodesAndCannotBeRecreated) {
  start(make_spec(probe_path(), /*io_uring=*/true));
  Instance& inst = start_instance("uring");
  const std::string r = reply(inst);
  EXPECT_EQ(field(r, "ring="), "1") << r;
  EXPECT_EQ(field(r, "nop="), "0") << r;
  EXPECT_EQ(field(r, "openat="), std::to_string(-EACCES)) << r;
  EXPECT_EQ(field(r, "setup="), std::to_string(EPERM)) << r;
  EXPECT_EQ(ask(inst, "fds"), "0,1,2,3");  // the ring is its only extra fd
}

TEST_F(FastTest, KvindexInitRunsOncePerTemplate) {
  TemplateSpec spec = make_spec(kvindex_path());
  spec.pool_size = 2;
  Template& t = start(std::move(spec));
  EXPECT_GT(t.stats().init_ns, 0u);
  ASSERT_TRUE(run_until([&] { return t.pool_ready() == 2; }));
  std::set<std::string> init_pids;
  for (int i = 0; i < 4; ++i) {
    Instance& inst = start_instance("stats");
    const std::string s = reply(inst);
    EXPECT_EQ(field(s, "init_count="), "1") << s;
    EXPECT_EQ(field(s, "keys="), "200000") << s;
    init_pids.insert(field(s, "init_pid="));
    EXPECT_EQ(ask(inst, "get key199999").rfind("value-", 0), 0u);
    EXPECT_EQ(ask(inst, "get nope"), "-");
  }
  EXPECT_EQ(init_pids.size(), 1u);
}

TEST_F(FastTest, SustainedChurnFromThePool) {
  TemplateSpec spec = make_spec(echo_path());
  spec.pool_size = 4;
  Template& t = start(std::move(spec));
  ASSERT_TRUE(run_until([&] { return t.pool_ready() == 4; }));
  constexpr int kStarts = 60;
  for (int i = 0; i < kStarts; ++i) {
    Instance& inst = start_instance("x" + std::to_string(i));
    ASSERT_EQ(reply(inst), "x" + std::to_string(i));
    ASSERT_TRUE(inst.send({}).ok());  // empty message: exit 0
    if (i % 8 == 7) {
      ASSERT_TRUE(run_until([&] { return exited_.size() == static_cast<size_t>(i + 1); }));
      for (uint64_t id : exited_) t.forget(id);
    }
  }
  ASSERT_TRUE(run_until([&] { return exited_.size() == kStarts; }));
  EXPECT_EQ(t.stats().pool_hits + t.stats().pool_misses, static_cast<uint64_t>(kStarts));
  EXPECT_GT(t.stats().pool_hits, 0u);
  EXPECT_LE(t.live_instances(), 4u + 2u);  // the pool and its refills in flight, nothing leaked
}

}  // namespace
}  // namespace plume::fwp::test
