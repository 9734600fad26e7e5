// The template's table of staged channels (fwp/libplume/staged_channels.h) on its own, in this
// process: capacity, refusals, which channel is premapped, and that each fd is closed exactly
// once. (staging_test.cc drives the same code inside a real template.)
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <string>
#include <string_view>
#include <vector>

#include "plume/fwp/channel.h"
#include "staged_channels.h"

namespace plume::libplume {
namespace {

const fwp::ChannelGeometry kGeometry{16, 256, 0};

bool fd_open(int fd) { return ::fcntl(fd, F_GETFD) >= 0; }

// A real channel memfd, and the creator's endpoint to see what a premapped mapping shows.
struct Made {
  int fd;
  fwp::Channel endpoint;
};
Made make_channel() {
  auto c = fwp::Channel::create(kGeometry);
  EXPECT_TRUE(c) << c.error().message();
  return Made{c->memfd.release(), std::move(c->endpoint)};
}

// Whether `marker` shows in the table's premapped channel.
bool premapped_holds(const StagedChannels& staged, const std::string& marker) {
  const auto* bytes = static_cast<const char*>(staged.premapped());
  const std::string_view mapped(bytes, kGeometry.mapping_size());
  return mapped.find(marker) != std::string_view::npos;
}

TEST(StagedChannels, TheOldestIsPremappedAndTheNextTakesItsPlace) {
  StagedChannels staged(kGeometry);
  EXPECT_EQ(staged.premapped(), nullptr);
  Made one = make_channel(), two = make_channel();
  ASSERT_TRUE(staged.add(1, one.fd));
  ASSERT_TRUE(staged.add(2, two.fd));
  EXPECT_EQ(staged.premapped_serial(), 1u);
  ASSERT_NE(staged.premapped(), nullptr);
  // The premapped bytes are channel 1's: what its creator sends shows there, channel 2's does not.
  const std::string marker1 = "channel-one-marker", marker2 = "channel-two-marker";
  ASSERT_TRUE(one.endpoint.send(std::as_bytes(std::span(marker1))));
  ASSERT_TRUE(two.endpoint.send(std::as_bytes(std::span(marker2))));
  EXPECT_TRUE(premapped_holds(staged, marker1));
  EXPECT_FALSE(premapped_holds(staged, marker2));
  staged.remove(1);
  EXPECT_FALSE(fd_open(one.fd));
  EXPECT_TRUE(fd_open(two.fd));
  EXPECT_EQ(staged.premapped_serial(), 2u);
  ASSERT_NE(staged.premapped(), nullptr);
  EXPECT_TRUE(premapped_holds(staged, marker2));
  staged.remove(2);
  EXPECT_FALSE(fd_open(two.fd));
  EXPECT_EQ(staged.premapped(), nullptr);
  EXPECT_EQ(staged.fd_of(2), -1);
}

TEST(StagedChannels, RemovingAnotherThanTheOldestKeepsThePremappedOne) {
  StagedChannels staged(kGeometry);
  Made a = make_channel(), b = make_channel(), c = make_channel();
  ASSERT_TRUE(staged.add(10, a.fd));
  ASSERT_TRUE(staged.add(11, b.fd));
  ASSERT_TRUE(staged.add(12, c.fd));
  void* const premapped = staged.premapped();
  staged.remove(11);
  EXPECT_FALSE(fd_open(b.fd));
  EXPECT_EQ(staged.premapped(), premapped);
  EXPECT_EQ(staged.premapped_serial(), 10u);
  EXPECT_EQ(staged.fd_of(12), c.fd);
  staged.remove(99);  // not staged: nothing happens
  EXPECT_EQ(staged.fd_of(10), a.fd);
  staged.remove(10);
  staged.remove(12);
  EXPECT_FALSE(fd_open(a.fd));
  EXPECT_FALSE(fd_open(c.fd));
}

// The template checks a channel's header as it premaps it, so that the child need not: one the
// size of a channel but without its header is left to the child's own attach, which reports it.
TEST(StagedChannels, AChannelWhoseHeaderDoesNotMatchIsNotPremapped) {
  StagedChannels staged(kGeometry);
  const int blank = ::memfd_create("staged-test", MFD_CLOEXEC);
  ASSERT_GE(blank, 0);
  ASSERT_EQ(::ftruncate(blank, static_cast<off_t>(kGeometry.mapping_size())), 0);
  ASSERT_TRUE(staged.add(1, blank));
  EXPECT_EQ(staged.premapped(), nullptr);
  Made good = make_channel();
  ASSERT_TRUE(staged.add(2, good.fd));
  staged.remove(1);  // the next oldest, a real channel, is premapped in its place
  EXPECT_NE(staged.premapped(), nullptr);
  EXPECT_EQ(staged.premapped_serial(), 2u);
  staged.remove(2);
}

TEST(StagedChannels, SerialZeroAHeldSerialAndAFullTableAreRefusedAndTheirFdsClosed) {
  StagedChannels staged(kGeometry);
  std::vector<int> fds;
  for (int i = 0; i < StagedChannels::kCapacity; ++i) {
    const int fd = ::memfd_create("staged-test", MFD_CLOEXEC);
    ASSERT_GE(fd, 0);
    fds.push_back(fd);
    ASSERT_TRUE(staged.add(static_cast<uint32_t>(i + 1), fd)) << i;
  }
  // (Plain empty memfds: too small for the geometry, so none is premapped, or read.)
  EXPECT_EQ(staged.premapped(), nullptr);
  for (int bad_serial : {0, 1, StagedChannels::kCapacity + 1}) {
    const int fd = ::memfd_create("staged-test", MFD_CLOEXEC);
    ASSERT_GE(fd, 0);
    EXPECT_FALSE(staged.add(static_cast<uint32_t>(bad_serial), fd)) << bad_serial;
    EXPECT_FALSE(fd_open(fd)) << bad_serial;
  }
  EXPECT_EQ(staged.fd_of(1), fds[0]);
  for (int i = 0; i < StagedChannels::kCapacity; ++i) staged.remove(static_cast<uint32_t>(i + 1));
  for (int fd : fds) EXPECT_FALSE(fd_open(fd));
}

}  // namespace
}  // namespace plume::libplume
