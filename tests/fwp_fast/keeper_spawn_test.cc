// A template whose keeper the spawn helper clones (TemplateSpec::spawner, plumed's way): the
// clone is answered through the loop, the template serves as any other, a template destroyed
// while its keeper is still being cloned leaves no process behind, and a spawn that fails in the
// helper reaches Events::failed by name.
#include <poll.h>
#include <unistd.h>

#include "fwp_fast/fast_fixture.h"
#include "plume/fwp/spawn_service.h"
#include "support/proc_status.h"

namespace plume::fwp::test {
namespace {

class KeeperSpawnTest : public FastTest {
 protected:
  void SetUp() override {
    FastTest::SetUp();
    if (IsSkipped()) return;
    auto s = SpawnService::start();
    ASSERT_TRUE(s.ok()) << s.error().message();
    service_ = std::move(*s);
    // As plumed's loop does: the helper's answers are events of the loop.
    loop_.watch(service_->answer_fd(), [this] { service_->on_answers(); });
  }
  void TearDown() override {
    tmpl_.reset();  // before the service it may have a request with
    if (service_) loop_.unwatch(service_->answer_fd());
    service_.reset();
    FastTest::TearDown();
  }
  std::unique_ptr<SpawnService> service_;
};

TEST_F(KeeperSpawnTest, AKeeperClonedByTheHelperIsOurChildAndItsTemplateServes) {
  TemplateSpec spec = make_spec(probe_path());
  spec.spawner = service_.get();
  Template& t = start(std::move(spec));  // runs the loop: the answer, then the hello
  EXPECT_EQ(plume::test::proc_status_field(t.keeper_pid(), "PPid"), std::to_string(::getpid()));
  Instance& inst = start_instance("ids");
  EXPECT_NE(reply(inst), "<timeout>");
  EXPECT_EQ(ask(inst, "still here"), "still here");
}

TEST_F(KeeperSpawnTest, ATemplateDestroyedWhileItsKeeperIsClonedLeavesNoProcess) {
  TemplateSpec spec = make_spec(probe_path());
  spec.spawner = service_.get();
  Template::Events ev;
  auto t = Template::start(std::move(spec), loop_, ev);
  ASSERT_TRUE(t.ok()) << t.error().message();
  ASSERT_EQ(service_->pending(), 1u) << "the keeper's spawn was answered before the loop ran";
  t->reset();  // cancels the request
  ASSERT_TRUE(run_until([&] { return service_->pending() == 0; }));
  // The answer's keeper was killed and reaped, never released.
  EXPECT_EQ(plume::test::zombie_children_of(::getpid()), 0);
  for (const plume::test::ChildProcess& c : plume::test::children_of(::getpid()))
    EXPECT_EQ(c.pid, service_->helper_pid()) << "a child left behind: " << c.comm;
}

TEST_F(KeeperSpawnTest, AKeeperSpawnThatFailsInTheHelperReachesEventsFailed) {
  TemplateSpec spec = make_spec(probe_path());
  spec.spawner = service_.get();
  spec.sandbox.cgroup_procs_files = {"/nonexistent-plume-cgroup/cgroup.procs"};
  std::string why;
  Template::Events ev;
  ev.failed = [&](const std::string& w) { why = w; };
  auto t = Template::start(std::move(spec), loop_, ev);
  ASSERT_TRUE(t.ok()) << t.error().message();  // the failure comes with the answer
  ASSERT_TRUE(run_until([&] { return !why.empty(); }));
  EXPECT_NE(why.find("cgroup_attach"), std::string::npos) << why;
  EXPECT_FALSE((*t)->ready());
  EXPECT_EQ(plume::test::zombie_children_of(::getpid()), 0);
}

}  // namespace
}  // namespace plume::fwp::test
