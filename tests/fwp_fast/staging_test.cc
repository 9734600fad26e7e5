// Channel staging (template_protocol.h, "Staging"), driven record by record against a real
// libplume template (plume_probe), without plumed's controller and without a sandbox: FORKs that
// name the premapped channel, another staged one, an unknown or a consumed one, and UNSTAGE.
// Each instance says how many channel mappings it holds: exactly its own.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <map>
#include <vector>
#include <string>

#include "plume/fwp/channel.h"
#include "template_protocol.h"
#include "template_wire.h"

namespace plume::fwp {
namespace {

using namespace std::chrono_literals;

// Starts plume_probe as a keeper on the controller's end of a new socket pair, as plumed would
// without a sandbox; its stderr goes to `stderr_fd` when given. Returns its pid (-1 if fork
// failed) and sets `control` to this side's end.
pid_t spawn_probe_keeper(int& control, int stderr_fd = -1) {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) return -1;
  const pid_t keeper = ::fork();
  if (keeper == 0) {
    if (::dup2(sv[1], 3) != 3) _exit(120);  // libplume's control socket
    if (stderr_fd >= 0 && ::dup2(stderr_fd, 2) != 2) _exit(120);
    ::setenv("PLUME_FWP_ROLE", "template", 1);
    char* argv[] = {const_cast<char*>(PLUME_PROBE_PATH), nullptr};
    ::execv(PLUME_PROBE_PATH, argv);
    _exit(121);
  }
  ::close(sv[1]);
  control = sv[0];
  return keeper;
}

class StagingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    keeper_ = spawn_probe_keeper(control_);
    ASSERT_GE(keeper_, 0);
    wire::Msg config;
    config.type = wire::Type::config;
    config.slots = geometry_.slots;
    config.slot_size = geometry_.slot_size;
    ASSERT_EQ(wire::send_msg(control_, config), 0);
    wire::Msg hello;
    int pidfd = -1;
    ASSERT_EQ(wire::recv_msg(control_, hello, &pidfd), 0);
    ASSERT_EQ(hello.type, wire::Type::hello);
    ASSERT_GE(pidfd, 0);
    ::close(pidfd);
  }

  void TearDown() override {
    // An instance a failed check left waiting for its next message would outlive the test, and
    // hold ctest's output pipe open.
    for (const int pidfd : instances_) {
      (void)::syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, nullptr, 0);
      ::close(pidfd);
    }
    // End of stream: the template exits, then the keeper once it has reaped it.
    if (control_ >= 0) ::close(control_);
    if (keeper_ > 0) {
      int status = 0;
      ASSERT_EQ(::waitpid(keeper_, &status, 0), keeper_);
      EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
    }
  }

  // Makes a channel, queues the instance's first message on it, stages it as `serial`.
  void stage(uint32_t serial, const std::string& first_message) {
    auto created = Channel::create(geometry_);
    ASSERT_TRUE(created) << created.error().message();
    ASSERT_TRUE(created->endpoint.send(std::as_bytes(std::span(first_message))));
    wire::Msg m;
    m.type = wire::Type::stage;
    m.channel = serial;
    ASSERT_EQ(wire::send_msg(control_, m, created->memfd.get()), 0);
    channels_.emplace(serial, std::move(created->endpoint));
  }

  void unstage(uint32_t serial) {
    wire::Msg m;
    m.type = wire::Type::unstage;
    m.channel = serial;
    ASSERT_EQ(wire::send_msg(control_, m), 0);
  }

  // Sends a FORK naming `serial` and returns the template's answer: 0 (forked) or its errno.
  int fork_with(uint32_t serial) {
    wire::Msg m;
    m.type = wire::Type::fork;
    m.instance_id = ++instance_id_;
    m.channel = serial;
    if (wire::send_msg(control_, m) != 0) return -1;
    for (;;) {
      wire::Msg reply;
      int pidfd = -1;
      if (wire::recv_msg(control_, reply, &pidfd) != 0) return -1;
      if (reply.type != wire::Type::forked) {  // `exited` of an earlier instance
        if (pidfd >= 0) ::close(pidfd);
        continue;
      }
      if (pidfd >= 0) instances_.push_back(pidfd);
      EXPECT_EQ(reply.instance_id, instance_id_);
      return reply.err;
    }
  }

  // The instance's reply to its first message, and then its end. Forked for a start, it sends
  // no readiness record first (protocol version 3): its first record is the app's.
  std::string reply_on(uint32_t serial) {
    Channel& ch = channels_.at(serial);
    std::byte buf[256];
    auto got = ch.recv(buf, 10s);
    if (!got) return "no reply";
    const std::string reply(reinterpret_cast<const char*>(buf), *got);
    const std::string bye = "exit 0";
    (void)ch.send(std::as_bytes(std::span(bye)));
    return reply;
  }

  ChannelGeometry geometry_{};
  pid_t keeper_ = -1;
  int control_ = -1;
  uint64_t instance_id_ = 0;
  std::map<uint32_t, Channel> channels_;
  std::vector<int> instances_;  // pidfds of the instances forked
};

// An app linked with another libplume than plumed's: its keeper says so and exits, rather than
// misread the records.
TEST(ControlProtocol, AKeeperGivenAnotherVersionsConfigSaysSoAndExits) {
  int err_pipe[2];
  ASSERT_EQ(::pipe2(err_pipe, O_CLOEXEC), 0);
  int control = -1;
  const pid_t keeper = spawn_probe_keeper(control, err_pipe[1]);
  ASSERT_GE(keeper, 0);
  ::close(err_pipe[1]);
  wire::Msg config;
  config.type = wire::Type::config;
  config.version = wire::kVersion - 1;
  config.slots = 16;
  config.slot_size = 256;
  ASSERT_EQ(wire::send_msg(control, config), 0);
  int status = 0;
  ASSERT_EQ(::waitpid(keeper, &status, 0), keeper);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 125) << status;
  std::string said(512, '\0');
  const ssize_t n = ::read(err_pipe[0], said.data(), said.size());
  said.resize(n > 0 ? static_cast<size_t>(n) : 0);
  EXPECT_NE(said.find("not control protocol version " + std::to_string(wire::kVersion)), std::string::npos)
      << said;
  ::close(control);
  ::close(err_pipe[0]);
}

TEST_F(StagingTest, EachInstanceMapsOnlyItsOwnChannelWhicheverStagedOneItsForkNames) {
  stage(1, "maps");
  stage(2, "maps");
  stage(3, "fds");
  // Channel 1 is the one premapped: the child forked for 2 inherits that mapping and drops it.
  ASSERT_EQ(fork_with(2), 0);
  EXPECT_EQ(reply_on(2), "1");
  ASSERT_EQ(fork_with(1), 0);  // the premapped one itself
  EXPECT_EQ(reply_on(1), "1");
  ASSERT_EQ(fork_with(3), 0);
  EXPECT_EQ(reply_on(3), "0,1,2");  // and no staged memfd survives into it
}

TEST_F(StagingTest, AForkNamingNoStagedChannelIsAnsweredEbadfAndTheTemplateGoesOn) {
  EXPECT_EQ(fork_with(7), EBADF);  // never staged
  stage(1, "maps");
  ASSERT_EQ(fork_with(1), 0);
  EXPECT_EQ(reply_on(1), "1");
  EXPECT_EQ(fork_with(1), EBADF);  // a FORK consumes its channel
  stage(2, "maps");
  stage(3, "maps");
  unstage(2);                      // the premapped one: 3 is premapped in its place
  EXPECT_EQ(fork_with(2), EBADF);
  ASSERT_EQ(fork_with(3), 0);
  EXPECT_EQ(reply_on(3), "1");
}

TEST_F(StagingTest, AStageThatReusesAHeldSerialIsRefused) {
  stage(1, "maps");
  stage(1, "fds");  // refused (its memfd closed): the first channel 1 stays staged
  ASSERT_EQ(fork_with(1), 0);
  EXPECT_EQ(reply_on(1), "1");  // the first one's message; channels_ kept the first endpoint too
}

}  // namespace
}  // namespace plume::fwp
