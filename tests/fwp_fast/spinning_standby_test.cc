// Spinning standbys: pool instances that poll their channel at SCHED_IDLE instead of sleeping,
// are taken first by a start, serve it at normal policy, and back off to sleeping while their
// CPU is contended.
#include <sched.h>
#include <unistd.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "fwp_fast/fast_fixture.h"

namespace plume::fwp::test {
namespace {

class SpinningStandbyTest : public FastTest {
 protected:
  Template& start_spinning(size_t pool_size) {
    TemplateSpec spec = make_spec(probe_path());
    spec.pool_size = pool_size;
    spec.spinning_standbys = 1;
    return start(std::move(spec));
  }

  // The parked instances of `t` now at SCHED_IDLE.
  std::vector<pid_t> idle_policy_parked(Template& t) {
    std::vector<pid_t> out;
    for (const Instance* inst : t.parked()) {
      if (inst->spins() && ::sched_getscheduler(inst->pid()) == SCHED_IDLE) out.push_back(inst->pid());
    }
    return out;
  }
};

TEST_F(SpinningStandbyTest, AStartTakesTheSpinnerWhichRunsTheHandlerAtNormalPolicy) {
  Template& t = start_spinning(3);
  if (!t.spinning_allowed()) GTEST_SKIP() << "neither CAP_SYS_NICE nor RLIMIT_NICE 20 to lend";
  ASSERT_TRUE(run_until([&] { return t.pool_ready() == 3 && idle_policy_parked(t).size() == 1; }))
      << "expected one of three parked instances polling at SCHED_IDLE";
  const pid_t spinner = idle_policy_parked(t).front();
  // It polls (runnable), where the others sleep on their futex. (Waited for: where the host is
  // busy, e.g. tests running in parallel, it may be in a back-off sleep at first.)
  EXPECT_TRUE(run_until([&] { return proc_state(spinner) == 'R'; })) << "the standby never polled";
  Instance& inst = start_instance("ids");
  EXPECT_EQ(inst.path(), StartPath::pool);
  EXPECT_EQ(inst.pid(), spinner) << "the start did not take the spinning standby";
  ASSERT_NE(reply(inst), "<timeout>");
  // Its first microseconds may still run at SCHED_IDLE (the supervisor raises it right after the
  // doorbell, where the instance may not itself); by its first answer, it is back to normal.
  const std::string ids = ask(inst, "ids");
  EXPECT_EQ(field(ids, "policy="), std::to_string(SCHED_OTHER)) << ids;
  EXPECT_EQ(field(ids, "nice="), "0") << ids;
  // The refill brings a new spinner, and only one.
  ASSERT_TRUE(run_until([&] { return t.pool_ready() == 3 && idle_policy_parked(t).size() == 1; }));
  EXPECT_NE(idle_policy_parked(t).front(), spinner);
  // A second start while the first still runs takes the new spinner.
  const pid_t next = idle_policy_parked(t).front();
  Instance& second = start_instance("ids");
  EXPECT_EQ(second.pid(), next);
  ASSERT_NE(reply(second), "<timeout>");
  EXPECT_EQ(field(ask(second, "ids"), "policy="), std::to_string(SCHED_OTHER));
}

TEST_F(SpinningStandbyTest, OnABusyHostItSleepsAndStillStarts) {
  Template& t = start_spinning(1);
  if (!t.spinning_allowed()) GTEST_SKIP() << "neither CAP_SYS_NICE nor RLIMIT_NICE 20 to lend";
  ASSERT_TRUE(run_until([&] { return t.pool_ready() == 1 && idle_policy_parked(t).size() == 1; }));
  const pid_t spinner = idle_policy_parked(t).front();
  // Every CPU busy at normal policy: the spinner is kept off, notices, and sleeps.
  std::atomic<bool> stop{false};
  std::vector<std::thread> hogs;
  const long cpus = ::sysconf(_SC_NPROCESSORS_ONLN);
  for (long i = 0; i < cpus; ++i) {
    hogs.emplace_back([&] {
      while (!stop.load(std::memory_order_relaxed)) {
      }
    });
  }
  const bool backed_off = run_until(
      [&] { return proc_state(spinner) == 'S'; }, 20s);
  stop = true;
  for (auto& h : hogs) h.join();
  ASSERT_TRUE(backed_off) << "the spinner kept polling on a busy host";
  Instance& inst = start_instance("ids");
  EXPECT_EQ(inst.pid(), spinner);
  ASSERT_NE(reply(inst), "<timeout>");
  EXPECT_EQ(field(ask(inst, "ids"), "policy="), std::to_string(SCHED_OTHER));
}

}  // namespace
}  // namespace plume::fwp::test
