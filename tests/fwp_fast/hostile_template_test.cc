// A template that lies. After init a template is tenant code, and it shares the control socket
// with its keeper: the controller must believe nothing it says that it can check, and go on
// serving the rest of the tenant. plume_liar (liar_app.cc) forges records from a fork handler, at
// each fork, before libplume's own answer; every start here forks (no pool), so every start
// meets the lie.
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <span>
#include <string>

#include "fwp_fast/fast_fixture.h"

namespace plume::fwp::test {
namespace {

class HostileTemplateTest : public FastTest {
 protected:
  Template& start_liar(const std::string& lie) {
    TemplateSpec spec = make_spec(liar_path());
    spec.pool_size = 0;
    spec.sandbox.env.push_back("PLUME_LIAR=" + lie);
    return start(std::move(spec));
  }
  // Runs the loop until the controller has read the template's own answer to the instance's
  // FORK (its pid is known). Its reply on the channel can come first; the records the liar
  // forged before that answer have then been read as well.
  void wait_answered(Instance& inst) {
    EXPECT_TRUE(run_until([&] { return inst.pid() > 0 || inst.exit().has_value(); }))
        << inst.name();
  }
  // The instance answers, ends on an empty message, and is reported once, with code 0.
  void expect_serves_and_ends(Instance& inst, const std::string& msg) {
    EXPECT_EQ(ask(inst, msg), msg);
    const size_t reported = exited_.size();
    EXPECT_EQ(ask(inst, ""), "<exited>");
    const InstanceExit& e = wait_exit(inst);
    EXPECT_EQ(e.cause, ExitCause::exit);
    EXPECT_EQ(e.code, 0);
    EXPECT_EQ(exited_.size(), reported + 1);
  }
  // The start whose FORK met a forged `forked` for every id from 1 to 64 is lost, as a bad
  // answer; the other 63 guesses had no FORK pending, and libplume's own answer came too late.
  void expect_lost_to_the_forged_answer(Template& t, Instance& inst) {
    const InstanceExit& e = wait_exit(inst);
    EXPECT_EQ(e.cause, ExitCause::lost);
    EXPECT_EQ(e.err, EBADMSG);
    EXPECT_EQ(t.stats().fork_failures, 1u);
    EXPECT_TRUE(run_until([&] { return t.stats().protocol_errors == 65u; }))
        << t.stats().protocol_errors;
  }
};

// Only the keeper may say the template died, and only once it has. Believed, the lie would stop
// FORKs until a hello that never comes: the second start would hang.
TEST_F(HostileTemplateTest, ATemplateThatSaysItDiedWhileItRunsIsNotBelieved) {
  Template& t = start_liar("template_exited");
  const pid_t template_pid = t.template_pid();
  Instance& a = start_instance("one");
  EXPECT_EQ(reply(a), "one");
  Instance& b = start_instance("two");
  EXPECT_EQ(reply(b), "two");
  wait_answered(b);
  EXPECT_EQ(t.stats().protocol_errors, 2u);
  EXPECT_EQ(t.stats().template_restarts, 0u);
  EXPECT_EQ(template_exits_, 0);
  EXPECT_TRUE(t.ready());
  EXPECT_EQ(t.template_pid(), template_pid);
  expect_serves_and_ends(a, "still one");
  expect_serves_and_ends(b, "still two");
}

// "Pid N exited" for every pid of its namespace, the running instance's among them: an exit
// counts only for an instance whose pidfd says it is dead.
TEST_F(HostileTemplateTest, ForgedExitsOfRunningInstancesAreIgnored) {
  start_liar("exited");
  Instance& a = start_instance("one");
  EXPECT_EQ(reply(a), "one");
  Instance& b = start_instance("two");  // forged while `a` runs
  EXPECT_EQ(reply(b), "two");
  wait_answered(b);
  EXPECT_TRUE(exited_.empty());
  EXPECT_EQ(a.state(), InstanceState::running);
  expect_serves_and_ends(a, "still one");
  expect_serves_and_ends(b, "still two");
}

TEST_F(HostileTemplateTest, MalformedRecordsAreCountedAndDropped) {
  Template& t = start_liar("garbage");
  Instance& a = start_instance("one");
  EXPECT_EQ(reply(a), "one");
  wait_answered(a);
  EXPECT_EQ(t.stats().protocol_errors, 2u);  // the wrong magic, the short record
  expect_serves_and_ends(a, "still one");
}

TEST_F(HostileTemplateTest, ASecondHelloDoesNotReplaceTheTemplate) {
  Template& t = start_liar("hello");
  const pid_t template_pid = t.template_pid();
  Instance& a = start_instance("one");
  EXPECT_EQ(reply(a), "one");
  wait_answered(a);
  EXPECT_EQ(t.stats().protocol_errors, 1u);
  EXPECT_EQ(t.template_pid(), template_pid);
  EXPECT_EQ(t.stats().generation, 1u);  // not the 7 it claimed
  expect_serves_and_ends(a, "still one");
}

// The template's own pidfd offered as the new instance: the start is lost, not handed the
// template, and the template stays.
TEST_F(HostileTemplateTest, TheTemplatesOwnPidfdIsNotTakenForAnInstance) {
  Template& t = start_liar("self");
  const pid_t template_pid = t.template_pid();
  expect_lost_to_the_forged_answer(t, start_instance("one"));
  EXPECT_TRUE(t.ready());
  EXPECT_EQ(t.template_pid(), template_pid);
}

// A running sibling's pidfd offered as the new instance passes every check of who the process
// is (a child of the template, in its namespace, the pid it claims): the controller must also
// see that another instance holds it. Taken, the new start would share the sibling's process.
TEST_F(HostileTemplateTest, ARunningSiblingsPidfdIsNotTakenForANewInstance) {
  Template& t = start_liar("sibling");
  Instance& a = start_instance("one");  // the template's only child: no lie yet
  EXPECT_EQ(reply(a), "one");
  wait_answered(a);
  EXPECT_EQ(t.stats().protocol_errors, 0u);
  expect_lost_to_the_forged_answer(t, start_instance("two"));
  expect_serves_and_ends(a, "still one");
}

// A template restarts when it dies; one whose init then fails is given up, as a first init that
// fails is, instead of being restarted as fast as it can fail.
TEST_F(HostileTemplateTest, ATemplateWhoseInitFailsOnRestartIsGivenUp) {
  Template& t = start_liar("init_fails_again");
  Instance& a = start_instance("one");
  EXPECT_EQ(reply(a), "one");
  ASSERT_EQ(::syscall(SYS_pidfd_send_signal, t.template_pidfd(), SIGKILL, nullptr, 0), 0);
  ASSERT_TRUE(run_until([&] { return !failed_.empty(); })) << t.stats().template_restarts;
  EXPECT_NE(failed_.find("init failed"), std::string::npos) << failed_;
  EXPECT_EQ(t.stats().template_restarts, 1u);
  EXPECT_EQ(template_readies_, 1);
  EXPECT_FALSE(t.ready());
  // Starts are refused from now on, not queued for a template that will not come.
  EXPECT_FALSE(t.start_instance(std::as_bytes(std::span("x", 1))).ok());
  // The first template's instance is given up with it (the keeper, its reaper, is killed).
  const InstanceExit& e = wait_exit(a);
  EXPECT_EQ(e.cause, ExitCause::lost);
  EXPECT_EQ(e.err, ESRCH);
}

}  // namespace
}  // namespace plume::fwp::test
