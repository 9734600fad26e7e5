// plumed under systemd (Type=notify): READY=1 only once its control socket answers, STOPPING=1 on
// SIGTERM, WATCHDOG=1 only where the manager armed a watchdog for plumed itself, and nothing it
// starts inherits the manager's socket. The manager here is a datagram socket the test binds, as
// systemd's is.
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <iterator>
#include <optional>
#include <regex>

#include "e2e.h"

namespace plume::test {
namespace {

// A bound AF_UNIX datagram socket standing in for systemd's notification socket.
class NotifySocket {
 public:
  explicit NotifySocket(const std::string& path) : path_(path) {
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
    if (fd_ >= 0 && ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      ::close(fd_);
      fd_ = -1;
    }
  }
  ~NotifySocket() {
    if (fd_ >= 0) ::close(fd_);
  }
  NotifySocket(const NotifySocket&) = delete;
  NotifySocket& operator=(const NotifySocket&) = delete;

  bool ok() const { return fd_ >= 0; }
  std::string env() const { return "NOTIFY_SOCKET=" + path_; }
  // The next datagram, or nullopt if none came within `timeout`.
  std::optional<std::string> next(std::chrono::milliseconds timeout) const {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(timeout.count())) != 1) return std::nullopt;
    char buf[4096];
    ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n < 0) return std::nullopt;
    return std::string(buf, static_cast<size_t>(n));
  }

 private:
  std::string path_;
  int fd_ = -1;
};

bool has_line(const std::string& message, const std::string& line) {
  return ("\n" + message + "\n").find("\n" + line + "\n") != std::string::npos;
}

// The spawn helper's pid, from plumed's `plumed.spawn_helper pid=…` line; -1 if none.
pid_t spawn_helper_pid(const std::string& plumed_stderr) {
  std::smatch m;
  static const std::regex re("event=plumed\\.spawn_helper pid=([0-9]+)");
  return std::regex_search(plumed_stderr, m, re) ? static_cast<pid_t>(std::stoi(m[1])) : -1;
}

std::string environ_of(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/environ");
  std::string env((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  for (char& c : env)
    if (c == '\0') c = '\n';
  return env;
}

TEST(ServiceManager, ReadyComesOnceTheSocketAnswersAndStoppingOnSigterm) {
  PLUME_SKIP_UNLESS_ROOT();
  TempDir dir("notify");
  NotifySocket manager(dir.path() + "/notify.sock");
  ASSERT_TRUE(manager.ok()) << std::strerror(errno);
  PlumedOptions options;
  options.extra_env = {manager.env()};
  Plumed plumed(options);
  ASSERT_TRUE(plumed.launch());

  auto ready = manager.next(15s);
  ASSERT_TRUE(ready.has_value()) << "no READY=1 within 15 s; stderr:\n" << plumed.stderr_text();
  EXPECT_TRUE(has_line(*ready, "READY=1")) << *ready;
  EXPECT_TRUE(has_line(*ready, "MAINPID=" + std::to_string(plumed.pid()))) << *ready;
  // A unit ordered after plumed connects as soon as READY=1 arrives: one try, no retry.
  auto health = plumed.request("GET", "/v1/health", "");
  EXPECT_EQ(health.status, 200) << show(health);

  // The spawn helper (and every worker it clones) must not speak for plumed to the manager.
  const pid_t helper = spawn_helper_pid(plumed.stderr_text());
  ASSERT_GT(helper, 0) << plumed.stderr_text();
  const std::string helper_env = environ_of(helper);
  EXPECT_FALSE(helper_env.empty()) << "cannot read /proc/" << helper << "/environ";
  EXPECT_EQ(helper_env.find("NOTIFY_SOCKET="), std::string::npos) << helper_env;

  ASSERT_EQ(plumed.stop(SIGTERM), 0) << plumed.stderr_text();
  auto stopping = manager.next(1s);
  ASSERT_TRUE(stopping.has_value()) << plumed.stderr_text();
  EXPECT_TRUE(has_line(*stopping, "STOPPING=1")) << *stopping;
  // No watchdog was armed, so plumed sent nothing else: an idle plumed does not wake for it.
  auto extra = manager.next(0ms);
  EXPECT_FALSE(extra.has_value()) << *extra;
}

TEST(ServiceManager, PlumedPetsTheWatchdogItIsGiven) {
  PLUME_SKIP_UNLESS_ROOT();
  TempDir dir("notify");
  NotifySocket manager(dir.path() + "/notify.sock");
  ASSERT_TRUE(manager.ok()) << std::strerror(errno);
  PlumedOptions options;
  options.extra_env = {manager.env(), "WATCHDOG_USEC=100000"};  // pets every 50 ms
  Plumed plumed(options);
  ASSERT_TRUE(plumed.launch());
  auto ready = manager.next(15s);
  ASSERT_TRUE(ready.has_value()) << plumed.stderr_text();
  int pets = 0;
  while (pets < 3) {
    auto message = manager.next(5s);
    ASSERT_TRUE(message.has_value()) << "only " << pets << " WATCHDOG=1 within 5 s of the last";
    ASSERT_EQ(*message, "WATCHDOG=1");
    ++pets;
  }
  EXPECT_EQ(plumed.stop(SIGTERM), 0);
}

TEST(ServiceManager, AWatchdogMeantForAnotherProcessIsLeftAlone) {
  PLUME_SKIP_UNLESS_ROOT();
  TempDir dir("notify");
  NotifySocket manager(dir.path() + "/notify.sock");
  ASSERT_TRUE(manager.ok()) << std::strerror(errno);
  PlumedOptions options;
  // systemd names the unit's main process; here that is pid 1, never plumed.
  options.extra_env = {manager.env(), "WATCHDOG_USEC=20000", "WATCHDOG_PID=1"};
  Plumed plumed(options);
  ASSERT_TRUE(plumed.launch());
  auto ready = manager.next(15s);
  ASSERT_TRUE(ready.has_value()) << plumed.stderr_text();
  EXPECT_TRUE(has_line(*ready, "READY=1")) << *ready;
  // Twenty of the intervals plumed would have pet at (10 ms), then the stop: STOPPING=1 comes next.
  auto during = manager.next(200ms);
  EXPECT_FALSE(during.has_value()) << *during;
  ASSERT_EQ(plumed.stop(SIGTERM), 0);
  auto stopping = manager.next(1s);
  ASSERT_TRUE(stopping.has_value());
  EXPECT_TRUE(has_line(*stopping, "STOPPING=1")) << *stopping;
}

}  // namespace
}  // namespace plume::test
