// A tenant's shared namespaces (plume/fwp/tenant_namespaces.h): two templates (two "images") of
// one tenant join the holder's user, pid, net, ipc and uts namespaces and keep their own mount
// namespace; another template keeps namespaces of its own. Read from the host through
// /proc/<pid>/ns of live processes. Then what sharing must not give away: an instance of one
// image reaching the other image's processes; and the lifetimes: a keeper's death ends its own
// template only, the holder's end ends the tenant.
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <map>
#include <string>

#include "fwp_fast/fast_fixture.h"
#include "plume/fwp/spawn_service.h"
#include "plume/fwp/tenant_namespaces.h"
#include "support/proc_status.h"

namespace plume::fwp::test {
namespace {

const char* const kShared[] = {"user", "pid", "net", "ipc", "uts"};

std::string ns_of(pid_t pid, const std::string& ns) {
  char target[128] = {};
  const std::string link = "/proc/" + std::to_string(pid) + "/ns/" + ns;
  const ssize_t n = ::readlink(link.c_str(), target, sizeof target - 1);
  return n > 0 ? std::string(target, static_cast<size_t>(n)) : "<" + link + " unreadable>";
}

// The last NSpid of /proc/<pid>/status: its pid in its own pid namespace.
std::string own_ns_pid(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("NSpid:", 0) == 0) return line.substr(line.find_last_of(" \t") + 1);
  }
  return "?";
}

class TenantNamespacesTest : public FastTest {
 protected:
  void SetUp() override {
    FastTest::SetUp();
    if (IsSkipped()) return;
    ASSERT_TRUE(cgroups().create("t/a", CgroupLimits{}).ok());
    ASSERT_TRUE(cgroups().create("t/b", CgroupLimits{}).ok());
    TemplateSpec base = make_spec(probe_path());
    base.sandbox.name = "tenant-t";
    base.sandbox.cgroup_procs_files = {};  // stays in ours, as plumed's holders stay in plumed's
    auto ns = TenantNamespaces::create(base.sandbox, PLUME_NS_HOLDER_PATH);
    ASSERT_TRUE(ns.ok()) << ns.error().message();
    holder_ = std::move(*ns);
  }
  void TearDown() override {
    joined_.clear();
    holder_.reset();
    FastTest::TearDown();
  }

  // A template of the probe app in the tenant's namespaces, in cgroup t/<name>.
  Template& start_joined(const std::string& name, InstanceIsolation isolation = InstanceIsolation::landlock_scope) {
    TemplateSpec spec = make_spec(probe_path());
    spec.spawner = spawner_;
    spec.sandbox.join_namespaces_of = holder_->pidfd();
    spec.sandbox.cgroup_procs_files = cgroups().procs_files("t/" + name);
    spec.template_cgroup = "t/" + name;
    spec.isolation = isolation;
    Template::Events ev;
    ev.instance_exited = [this](Instance& i) { exited_.push_back(i.id()); };
    ev.failed = [this, name](const std::string& why) { joined_failed_[name] = why; };
    auto t = Template::start(std::move(spec), loop_, ev);
    EXPECT_TRUE(t.ok()) << (t.ok() ? "" : t.error().message());
    if (!t.ok()) fatal();
    Template& ref = **t;
    joined_[name] = std::move(*t);
    EXPECT_TRUE(run_until([&] { return ref.ready() || joined_failed_.count(name) > 0; }, 15s)) << "no hello";
    EXPECT_TRUE(ref.ready()) << joined_failed_[name];
    return ref;
  }
  Instance& start_in(Template& t, const std::string& first) {
    auto inst = t.start_instance(std::as_bytes(std::span(first.data(), first.size())));
    EXPECT_TRUE(inst.ok()) << (inst.ok() ? "" : inst.error().message());
    if (!inst.ok()) fatal();
    return **inst;
  }

  std::unique_ptr<TenantNamespaces> holder_;
  SpawnService* spawner_ = nullptr;  // start_joined's keepers: null, spawned by this process
  std::map<std::string, std::unique_ptr<Template>> joined_;
  std::map<std::string, std::string> joined_failed_;
};

TEST_F(TenantNamespacesTest, ATenantsTemplatesShareItsNamespacesButNotTheirRoots) {
  Template& a = start_joined("a");
  Template& b = start_joined("b");
  Template& own = start(make_spec(probe_path()));  // namespaces of its own, as before
  Instance& ia = start_in(a, "ids");
  Instance& ib = start_in(b, "ids");
  Instance& io = start_instance("ids");
  ASSERT_NE(reply(ia), "<timeout>");
  ASSERT_NE(reply(ib), "<timeout>");
  ASSERT_NE(reply(io), "<timeout>");
  const pid_t holder = holder_->pid();
  for (const char* ns : kShared) {
    EXPECT_EQ(ns_of(ia.pid(), ns), ns_of(holder, ns)) << ns;
    EXPECT_EQ(ns_of(ib.pid(), ns), ns_of(holder, ns)) << ns;
    EXPECT_EQ(ns_of(a.keeper_pid(), ns), ns_of(holder, ns)) << ns;
    EXPECT_NE(ns_of(io.pid(), ns), ns_of(holder, ns)) << ns << ": a template of its own shares nothing";
  }
  // Each image keeps its own root.
  EXPECT_NE(ns_of(ia.pid(), "mnt"), ns_of(ib.pid(), "mnt"));
  EXPECT_NE(ns_of(ia.pid(), "mnt"), ns_of(holder, "mnt"));
  // The holder is the namespace's init; the keepers are not, and an own template's keeper is.
  EXPECT_EQ(own_ns_pid(holder), "1");
  EXPECT_NE(own_ns_pid(a.keeper_pid()), "1");
  EXPECT_EQ(own_ns_pid(own.keeper_pid()), "1");
  EXPECT_EQ(ask(ia, "still here"), "still here");
  EXPECT_EQ(ask(ib, "still here"), "still here");
}

// plumed's way (plume/fwp/spawn_service.h): the holder and a joined keeper cloned by the spawn
// helper are still this process's children, in the tenant's namespaces. The joining spawn's first
// child, ours by CLONE_PARENT too, has been reaped.
TEST_F(TenantNamespacesTest, ThroughTheSpawnHelperTheHolderAndKeepersAreStillOurChildren) {
  auto service = SpawnService::start();
  ASSERT_TRUE(service.ok()) << service.error().message();
  TemplateSpec base = make_spec(probe_path());
  base.sandbox.name = "tenant-u";
  base.sandbox.cgroup_procs_files = {};
  auto ns = TenantNamespaces::create(base.sandbox, PLUME_NS_HOLDER_PATH, service->get());
  ASSERT_TRUE(ns.ok()) << ns.error().message();
  const pid_t fixtures_holder = holder_->pid();
  holder_ = std::move(*ns);  // the fixture's own goes: nothing joined it
  spawner_ = service->get();
  // The keeper's spawn is answered through the loop, as plumed's loop watches it.
  loop_.watch((*service)->answer_fd(), [&] { (*service)->on_answers(); });
  Template& a = start_joined("a");
  Instance& ia = start_in(a, "ids");
  ASSERT_NE(reply(ia), "<timeout>");
  const std::string self = std::to_string(::getpid());
  EXPECT_EQ(plume::test::proc_status_field(holder_->pid(), "PPid"), self);
  EXPECT_EQ(plume::test::proc_status_field(a.keeper_pid(), "PPid"), self);
  for (const char* shared : kShared) EXPECT_EQ(ns_of(a.keeper_pid(), shared), ns_of(holder_->pid(), shared)) << shared;
  EXPECT_EQ(own_ns_pid(holder_->pid()), "1");
  // The fixture's holder, SIGKILLed, is reaped on a thread of its own: wait for that first.
  EXPECT_TRUE(run_until([&] { return ::kill(fixtures_holder, 0) != 0; }));
  EXPECT_EQ(plume::test::zombie_children_of(::getpid()), 0);
  EXPECT_EQ(ask(ia, "still here"), "still here");
  loop_.unwatch((*service)->answer_fd());
  joined_.clear();  // before the service: a keeper still being cloned would cancel its request
}

// plumed's way since the holder stopped blocking its loop: TenantNamespaces::start returns at
// once, `starting`; a template given it waits for the holder before its keeper is cloned, and a
// start made meanwhile is queued, then served in the tenant's namespaces.
class AsyncHolderTest : public TenantNamespacesTest {
 protected:
  void SetUp() override {
    TenantNamespacesTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    auto service = SpawnService::start();
    ASSERT_TRUE(service.ok()) << service.error().message();
    service_ = std::move(*service);
    spawner_ = service_.get();
    loop_.watch(service_->answer_fd(), [this] { service_->on_answers(); });
  }
  void TearDown() override {
    joined_.clear();  // the templates first, then the holders they joined, then the helper
    async_.reset();
    if (service_) loop_.unwatch(service_->answer_fd());
    service_.reset();
    TenantNamespacesTest::TearDown();
  }
  std::unique_ptr<TenantNamespaces> start_holder(const std::string& binary = PLUME_NS_HOLDER_PATH) {
    TemplateSpec base = make_spec(probe_path());
    base.sandbox.name = "tenant-v";
    base.sandbox.cgroup_procs_files = {};
    auto ns = TenantNamespaces::start(base.sandbox, binary, service_.get(), loop_);
    EXPECT_TRUE(ns.ok()) << (ns.ok() ? "" : ns.error().message());
    if (!ns.ok()) fatal();
    return std::move(*ns);
  }
  // A template of the probe app waiting for `ns`, in cgroup t/<name>; not run to its hello.
  Template& start_waiting(const std::string& name, TenantNamespaces& ns) {
    TemplateSpec spec = make_spec(probe_path());
    spec.spawner = spawner_;
    spec.tenant_namespaces = &ns;
    spec.sandbox.cgroup_procs_files = cgroups().procs_files("t/" + name);
    spec.template_cgroup = "t/" + name;
    spec.isolation = InstanceIsolation::landlock_scope;
    Template::Events ev;
    ev.failed = [this, name](const std::string& why) { joined_failed_[name] = why; };
    auto t = Template::start(std::move(spec), loop_, ev);
    EXPECT_TRUE(t.ok()) << (t.ok() ? "" : t.error().message());
    if (!t.ok()) fatal();
    return *(joined_[name] = std::move(*t));
  }
  std::unique_ptr<SpawnService> service_;
  std::unique_ptr<TenantNamespaces> async_;
};

TEST_F(AsyncHolderTest, ATemplateWaitsForTheHolderAndItsQueuedStartRunsInTheTenantsNamespaces) {
  async_ = start_holder();
  ASSERT_EQ(async_->state(), TenantNamespaces::State::starting) << "answered before the loop ran";
  EXPECT_EQ(async_->pidfd(), -1);
  EXPECT_TRUE(async_->alive());
  Template& a = start_waiting("a", *async_);
  EXPECT_FALSE(a.ready());
  EXPECT_EQ(a.keeper_pid(), -1) << "a keeper cloned before the holder runs";
  Instance& ia = start_in(a, "ids");  // queued, never refused
  ASSERT_NE(reply(ia, 15s), "<timeout>") << joined_failed_["a"];
  ASSERT_EQ(async_->state(), TenantNamespaces::State::ready) << async_->error();
  const pid_t holder = async_->pid();
  EXPECT_EQ(own_ns_pid(holder), "1");
  for (const char* shared : kShared) {
    EXPECT_EQ(ns_of(ia.pid(), shared), ns_of(holder, shared)) << shared;
    EXPECT_EQ(ns_of(a.keeper_pid(), shared), ns_of(holder, shared)) << shared;
  }
  EXPECT_NE(own_ns_pid(a.keeper_pid()), "1");
  EXPECT_EQ(plume::test::proc_status_field(holder, "PPid"), std::to_string(::getpid()));
  // A template started once the holder runs joins at once, as with a pidfd.
  Template& b = start_waiting("b", *async_);
  ASSERT_TRUE(run_until([&] { return b.ready() || joined_failed_.count("b") > 0; }, 15s)) << "no hello";
  EXPECT_EQ(ns_of(b.keeper_pid(), "pid"), ns_of(holder, "pid"));
  EXPECT_EQ(ask(ia, "still here"), "still here");
}

// A holder that cannot exec (here: /dev/null) fails after its answer, in the loop. The template
// that waited for it starts with namespaces of its own, and nothing of the holder is left.
TEST_F(AsyncHolderTest, AHolderThatFailsLeavesItsWaitingTemplateNamespacesOfItsOwn) {
  async_ = start_holder("/dev/null");
  Template& a = start_waiting("a", *async_);
  Instance& ia = start_in(a, "ids");
  ASSERT_NE(reply(ia, 15s), "<timeout>") << joined_failed_["a"];
  ASSERT_EQ(async_->state(), TenantNamespaces::State::failed);
  EXPECT_NE(async_->error().find("namespace holder"), std::string::npos) << async_->error();
  EXPECT_FALSE(async_->alive());
  EXPECT_EQ(async_->pidfd(), -1);
  EXPECT_EQ(own_ns_pid(a.keeper_pid()), "1") << "the keeper should be its own namespaces' init";
  EXPECT_NE(ns_of(ia.pid(), "pid"), ns_of(holder_->pid(), "pid"));
  EXPECT_EQ(plume::test::zombie_children_of(::getpid()), 0);
  EXPECT_TRUE(joined_failed_.empty()) << joined_failed_.begin()->second;
}

// Either side may go first: a template destroyed while it waits is forgotten by the holder (whose
// settling then calls nobody), and a holder destroyed while the helper clones it is cancelled:
// the helper's answer is discarded and its process ended and reaped.
TEST_F(AsyncHolderTest, AWaitingTemplateOrACancelledHolderCanGoFirst) {
  async_ = start_holder();
  start_waiting("a", *async_);
  joined_.erase("a");
  ASSERT_TRUE(run_until([&] { return async_->state() != TenantNamespaces::State::starting; }, 15s));
  EXPECT_EQ(async_->state(), TenantNamespaces::State::ready) << async_->error();

  const size_t children = plume::test::children_of(::getpid()).size();
  std::unique_ptr<TenantNamespaces> cancelled = start_holder();
  Template& b = start_waiting("b", *cancelled);
  joined_.erase("b");
  (void)b;
  cancelled.reset();
  ASSERT_TRUE(run_until([&] { return service_->pending() == 0; }, 15s));
  EXPECT_EQ(plume::test::children_of(::getpid()).size(), children) << "the cancelled holder is still around";
  EXPECT_EQ(plume::test::zombie_children_of(::getpid()), 0);
}

class TenantFenceTest : public TenantNamespacesTest,
                        public ::testing::WithParamInterface<InstanceIsolation> {};

TEST_P(TenantFenceTest, AnImagesInstanceCannotReachAnotherImagesProcesses) {
  Template& a = start_joined("a", GetParam());
  Template& b = start_joined("b", GetParam());
  Instance& attacker = start_in(a, "ids");
  Instance& victim = start_in(b, "ids");
  const std::string victim_ids = reply(victim);
  ASSERT_NE(reply(attacker), "<timeout>");
  // Pids of the shared namespace: the other image's instance, its template, and the holder.
  for (const std::string& target : {field(victim_ids, "pid="), field(victim_ids, "ppid="), std::string("1")}) {
    const std::string r = ask(attacker, "attack " + target);
    EXPECT_EQ(field(r, "vm="), std::to_string(EPERM)) << target << ": " << r;
    EXPECT_EQ(field(r, "ptrace="), std::to_string(EPERM)) << target << ": " << r;
    EXPECT_EQ(field(r, "kill="), std::to_string(EPERM)) << target << ": " << r;
    EXPECT_EQ(field(r, "mem="), std::to_string(EACCES)) << target << ": " << r;
  }
  EXPECT_EQ(ask(victim, "still here"), "still here");
  (void)b;
}

INSTANTIATE_TEST_SUITE_P(Fences, TenantFenceTest,
                         ::testing::Values(InstanceIsolation::seccomp_filter, InstanceIsolation::landlock_scope),
                         fence_name);

TEST_F(TenantNamespacesTest, AKeepersDeathEndsItsTemplateOnlyAndTheHoldersEndsTheTenant) {
  Template& a = start_joined("a");
  Template& b = start_joined("b");
  Instance& ia = start_in(a, "ids");
  Instance& ib = start_in(b, "ids");
  ASSERT_NE(reply(ia), "<timeout>");
  ASSERT_NE(reply(ib), "<timeout>");
  // Not pid 1 here: the kernel would not end a's processes with it; the controller does. (The
  // keeper is this process's child until reaped, so its pid is safe to signal.)
  ASSERT_EQ(::kill(a.keeper_pid(), SIGKILL), 0);
  EXPECT_TRUE(run_until([&] { return ia.exit().has_value(); })) << "a's instance outlived its keeper";
  EXPECT_TRUE(joined_failed_.count("a") > 0);
  EXPECT_EQ(ask(ib, "still here"), "still here") << "b's instance went down with a's keeper";
  EXPECT_TRUE(b.ready());
  // The holder's end is the namespace's: b's keeper, template and instance go with it.
  const pid_t b_instance = ib.pid();
  holder_.reset();
  EXPECT_TRUE(run_until([&] { return ib.exit().has_value(); })) << "b's instance outlived the holder";
  // Its pidfd turns readable at its exit; it leaves the pid table when the dying namespace's
  // reaping gets to it, a moment later (kill(pid, 0) still finds a zombie).
  EXPECT_TRUE(run_until([&] { return ::kill(b_instance, 0) != 0; })) << "b's instance was never reaped";
}

// A lost template (its keeper died; in shared namespaces its template is SIGKILLed through its
// cgroup, so its pidfd turns readable only afterwards) leaves no watch behind once destroyed: a
// leftover one called back into the freed Template (found by ASan through plumed).
TEST_F(TenantNamespacesTest, ALostTemplateLeavesNoWatchBehind) {
  const size_t before = loop_.watched();
  Template& a = start_joined("a");
  Instance& ia = start_in(a, "ids");
  ASSERT_NE(reply(ia), "<timeout>");
  ASSERT_EQ(::kill(a.keeper_pid(), SIGKILL), 0);
  ASSERT_TRUE(run_until([&] { return joined_failed_.count("a") > 0 && ia.exit().has_value(); }));
  joined_.erase("a");
  EXPECT_EQ(loop_.watched(), before);
}

}  // namespace
}  // namespace plume::fwp::test
