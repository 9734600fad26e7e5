// plumed under systemd (Type=notify): READY=1 only once its control socket answers, STOPPING=1 on
// SIGTERM, WATCHDOG=1 only where the manager armed a watchdog for plumed itself, and nothing it
// starts inherits the manager's socket. The manager here is a datagram socket the test binds, as
// systemd's is.
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <vector>

#include "e2e.h"
#include "support/notify_socket.h"

namespace plume::test {
namespace {

// The spawn helper's pid, from plumed's `plumed.spawn_helper pid=…` line; -1 if none.
pid_t spawn_helper_pid(const std::string& plumed_stderr) {
  const std::string key = "event=plumed.spawn_helper pid=";
  const size_t at = plumed_stderr.find(key);
  return at == std::string::npos ? -1 : static_cast<pid_t>(std::atoi(plumed_stderr.c_str() + at + key.size()));
}

std::string environ_of(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/environ");
  std::string env((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  for (char& c : env)
    if (c == '\0') c = '\n';
  return env;
}

// Each test starts plumed with NOTIFY_SOCKET naming a socket of the test's (launch(): the extra
// environment; it returns the first notification, nullopt if none came within 15 s).
class ServiceManagerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root: plumed creates cgroups and workers";
    ASSERT_TRUE(manager_.ok()) << std::strerror(errno);
  }
  std::optional<std::string> launch(std::vector<std::string> env) {
    PlumedOptions options;
    options.extra_env = std::move(env);
    options.extra_env.push_back(manager_.env());
    plumed_ = std::make_unique<Plumed>(options);
    if (!plumed_->launch()) return std::nullopt;
    return manager_.next(15s);
  }

  TempDir dir_{"notify"};
  NotifySocket manager_{dir_.path() + "/notify.sock"};
  std::unique_ptr<Plumed> plumed_;
};

TEST_F(ServiceManagerTest, ReadyComesOnceTheSocketAnswersAndStoppingOnSigterm) {
  auto ready = launch({});
  ASSERT_TRUE(ready.has_value()) << "no READY=1 within 15 s; stderr:\n" << plumed_->stderr_text();
  EXPECT_TRUE(has_line(*ready, "READY=1")) << *ready;
  EXPECT_TRUE(has_line(*ready, "MAINPID=" + std::to_string(plumed_->pid()))) << *ready;
  // A unit ordered after plumed connects as soon as READY=1 arrives: one try, no retry.
  auto health = plumed_->request("GET", "/v1/health", "");
  EXPECT_EQ(health.status, 200) << show(health);

  // The spawn helper (and every worker it clones) must not speak for plumed to the manager.
  const pid_t helper = spawn_helper_pid(plumed_->stderr_text());
  ASSERT_GT(helper, 0) << plumed_->stderr_text();
  const std::string helper_env = environ_of(helper);
  EXPECT_FALSE(helper_env.empty()) << "cannot read /proc/" << helper << "/environ";
  EXPECT_EQ(helper_env.find("NOTIFY_SOCKET="), std::string::npos) << helper_env;

  ASSERT_EQ(plumed_->stop(SIGTERM), 0) << plumed_->stderr_text();
  auto stopping = manager_.next(1s);
  ASSERT_TRUE(stopping.has_value()) << plumed_->stderr_text();
  EXPECT_TRUE(has_line(*stopping, "STOPPING=1")) << *stopping;
  // No watchdog was armed, so plumed sent nothing else: an idle plumed does not wake for it.
  auto extra = manager_.next(0ms);
  EXPECT_FALSE(extra.has_value()) << *extra;
}

TEST_F(ServiceManagerTest, PlumedPetsTheWatchdogItIsGiven) {
  auto ready = launch({"WATCHDOG_USEC=100000"});  // pets every 50 ms
  ASSERT_TRUE(ready.has_value()) << plumed_->stderr_text();
  int pets = 0;
  while (pets < 3) {
    auto message = manager_.next(5s);
    ASSERT_TRUE(message.has_value()) << "only " << pets << " WATCHDOG=1 within 5 s of the last";
    ASSERT_EQ(*message, "WATCHDOG=1");
    ++pets;
  }
  EXPECT_EQ(plumed_->stop(SIGTERM), 0);
}

TEST_F(ServiceManagerTest, AWatchdogMeantForAnotherProcessIsLeftAlone) {
  // systemd names the unit's main process; here that is pid 1, never plumed.
  auto ready = launch({"WATCHDOG_USEC=20000", "WATCHDOG_PID=1"});
  ASSERT_TRUE(ready.has_value()) << plumed_->stderr_text();
  EXPECT_TRUE(has_line(*ready, "READY=1")) << *ready;
  // Twenty of the intervals plumed would have pet at (10 ms), then the stop: STOPPING=1 comes next.
  auto during = manager_.next(200ms);
  EXPECT_FALSE(during.has_value()) << *during;
  ASSERT_EQ(plumed_->stop(SIGTERM), 0);
  auto stopping = manager_.next(1s);
  ASSERT_TRUE(stopping.has_value());
  EXPECT_TRUE(has_line(*stopping, "STOPPING=1")) << *stopping;
}

}  // namespace
}  // namespace plume::test
