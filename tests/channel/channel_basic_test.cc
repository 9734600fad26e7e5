// The channel's contract with a well-behaved peer: geometry, round trips in both directions,
// empty/full/too-big, wrap-around of slots and of the 32-bit indices, seals and close-on-exec.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "channel/channel_fixture.h"
#include "plume/fwp/channel.h"

namespace plume::fwp {
namespace {

using namespace std::chrono_literals;
using test::check_message;
using test::fill_message;
using test::message_size;

struct Pair {
  UniqueFd fd;
  Channel a;
  Channel b;
};

Pair make_pair(const ChannelGeometry& g) {
  auto created = Channel::create(g);
  if (!created) throw std::runtime_error(created.error().message());
  auto b = Channel::attach(created->memfd.get(), g, ChannelSide::b);
  if (!b) throw std::runtime_error(b.error().message());
  return Pair{std::move(created->memfd), std::move(created->endpoint), std::move(*b)};
}

std::span<const std::byte> bytes(const std::string& s) { return std::as_bytes(std::span(s)); }

TEST(ChannelGeometry, RejectsBadShapes) {
  for (auto g : {ChannelGeometry{0, 256}, ChannelGeometry{3, 256}, ChannelGeometry{1u << 17, 64},
                 ChannelGeometry{64, 32}, ChannelGeometry{64, 100}, ChannelGeometry{64, 1u << 17}}) {
    auto c = Channel::create(g);
    ASSERT_FALSE(c.ok()) << g.slots << "x" << g.slot_size;
    EXPECT_NE(c.error().message().find("channel create"), std::string::npos) << c.error().message();
  }
  ChannelGeometry g{64, 256};
  EXPECT_STREQ(g.check(), "");
  EXPECT_EQ(g.max_message(), 248u);
  EXPECT_EQ(g.mapping_size() % static_cast<size_t>(::sysconf(_SC_PAGESIZE)), 0u);
  EXPECT_GE(g.mapping_size(), 128u + 2 * (384u + 64u * 256u));
}

// An event loop's consumer (plumed's): it announces it sleeps, waits on the word itself, and a
// send rings the word exactly as it rings a thread sleeping in recv().
TEST(Channel, AnAsyncWaiterIsRungBySendAndFindsWhatCameFirst) {
  Pair p = make_pair(ChannelGeometry{8, 64});
  std::atomic_ref<uint32_t> bell(*p.a.async_wait_word());
  auto armed = p.a.begin_async_wait();
  ASSERT_TRUE(armed.ok());
  EXPECT_FALSE(armed.value()) << "nothing was sent";
  EXPECT_EQ(bell.load(), Channel::kAsyncWaitValue);
  ASSERT_TRUE(p.b.send(bytes("ping")).ok());
  EXPECT_NE(bell.load(), Channel::kAsyncWaitValue) << "the send left the word as it was: a futex wait never ends";
  EXPECT_EQ(p.b.stats().wakes, 1u);
  p.a.end_async_wait();
  EXPECT_EQ(bell.load(), 0u);
  std::array<std::byte, 64> buf{};
  auto got = p.a.try_recv(buf);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got.value(), 4u);
  // A message already there: begin says so and leaves the word awake (no wake-up needed).
  ASSERT_TRUE(p.b.send(bytes("pong")).ok());
  armed = p.a.begin_async_wait();
  ASSERT_TRUE(armed.ok());
  EXPECT_TRUE(armed.value());
  EXPECT_EQ(bell.load(), 0u);
  EXPECT_EQ(p.b.stats().wakes, 1u);
}

// An event loop's producer (plumed, for a request that may wait for room): it announces on the
// space bell, waits on the word itself, and the consumer rings it once it has read the ring empty,
// not before (a request goes in whole, so a wake-up before then would be for nothing).
TEST(Channel, AnAsyncSpaceWaiterIsRungOnceTheConsumerReadsTheRingEmpty) {
  ChannelGeometry g{4, 64};
  Pair p = make_pair(g);
  std::atomic_ref<uint32_t> bell(*p.a.async_space_word());
  // Room for what is asked: begin says so and leaves the bell awake.
  auto armed = p.a.begin_async_space_wait(4);
  ASSERT_TRUE(armed.ok());
  EXPECT_TRUE(armed.value());
  EXPECT_EQ(bell.load(), 0u);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(p.a.send(bytes("x")).ok());
  EXPECT_TRUE(p.a.begin_async_space_wait(1).value()) << "one slot is free";
  armed = p.a.begin_async_space_wait(2);
  ASSERT_TRUE(armed.ok());
  EXPECT_FALSE(armed.value()) << "only one slot is free";
  EXPECT_EQ(bell.load(), Channel::kAsyncWaitValue);
  std::array<std::byte, 64> buf{};
  ASSERT_TRUE(p.b.try_recv(buf).ok());
  ASSERT_TRUE(p.b.try_recv(buf).ok());
  EXPECT_EQ(bell.load(), Channel::kAsyncWaitValue) << "rung before the ring was read empty";
  ASSERT_TRUE(p.b.try_recv(buf).ok());
  EXPECT_EQ(p.b.try_recv(buf).error(), ChannelError::empty);
  EXPECT_NE(bell.load(), Channel::kAsyncWaitValue) << "read empty, and the word left as it was: a futex wait never ends";
  EXPECT_EQ(p.b.stats().space_wakes, 1u);
  p.a.end_async_space_wait();
  EXPECT_EQ(bell.load(), 0u);
  // More than the ring holds counts as all of it.
  EXPECT_TRUE(p.a.begin_async_space_wait(100).value());
}

TEST(Channel, SendCapacityFollowsThePeersReads) {
  Pair p = make_pair(ChannelGeometry{4, 64});
  ASSERT_EQ(p.a.send_capacity().value(), 4u);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(p.a.send(bytes("x")).ok());
  EXPECT_EQ(p.a.send_capacity().value(), 1u);
  std::array<std::byte, 64> buf{};
  ASSERT_TRUE(p.b.try_recv(buf).ok());
  ASSERT_TRUE(p.b.try_recv(buf).ok());
  EXPECT_EQ(p.a.send_capacity().value(), 3u);
}

TEST(Channel, RoundTripsBothWays) {
  auto p = make_pair({16, 128});
  ASSERT_TRUE(p.a.send(bytes("ping")).ok());
  std::array<std::byte, 120> buf{};
  auto r = p.b.try_recv(buf);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(buf.data()), *r), "ping");
  ASSERT_TRUE(p.b.send(bytes("pong!")).ok());
  r = p.a.recv(buf, 1s);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(buf.data()), *r), "pong!");
  EXPECT_EQ(p.a.stats().sent, 1u);
  EXPECT_EQ(p.a.stats().received, 1u);
  EXPECT_EQ(p.b.side(), ChannelSide::b);
}

TEST(Channel, EmptyRingSaysEmptyAndTimesOut) {
  auto p = make_pair({8, 64});
  std::array<std::byte, 56> buf{};
  auto r = p.b.try_recv(buf);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error(), ChannelError::empty);
  for (auto spin : {0ns, std::chrono::nanoseconds(5us)}) {
    p.b.set_spin(spin);
    const auto t0 = std::chrono::steady_clock::now();
    r = p.b.recv(buf, 30ms);
    const auto took = std::chrono::steady_clock::now() - t0;
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error(), ChannelError::timeout);
    EXPECT_GE(took, 30ms);
    EXPECT_LT(took, 2s);
  }
  // An endless timeout does not overflow the deadline (UBSan would say so); the sender waits
  // until the consumer announced its sleep on the doorbell, so the futex wake path is the one
  // taken.
  p.b.set_spin(0ns);
  std::thread sender([&] {
    test::RawMapping raw(p.fd.get(), ChannelGeometry{8, 64}.mapping_size());
    std::atomic_ref<uint32_t> bell(*raw.word_at(test::ring_offsets({8, 64}, 0).doorbell));
    const auto until = std::chrono::steady_clock::now() + 10s;
    while (bell.load() != 1 && std::chrono::steady_clock::now() < until) std::this_thread::yield();
    std::array<std::byte, 4> four{};
    (void)p.a.send(four);
  });
  r = p.b.recv(buf, std::chrono::nanoseconds::max());
  sender.join();
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, 4u);
  EXPECT_GE(p.b.stats().sleeps, 1u);
  r = p.b.recv(buf, std::chrono::nanoseconds(-5));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error(), ChannelError::timeout);
  EXPECT_FALSE(p.b.broken());
}

// 'S' in /proc/self/task/TID/stat: the thread sleeps (here: on the channel's futex).
bool thread_sleeps(pid_t tid) {
  const std::string path = "/proc/self/task/" + std::to_string(tid) + "/stat";
  char buf[256];
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  const ssize_t n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  if (n <= 0) return false;
  buf[n] = '\0';
  const char* paren = std::strrchr(buf, ')');
  return paren != nullptr && paren[1] == ' ' && paren[2] == 'S';
}

// send(msg, /*wake=*/false) publishes without waking a sleeping consumer: the next waking send
// wakes it once, and it reads both, in order.
TEST(Channel, AQuietSendIsReadWithTheNextWakingOne) {
  auto p = make_pair({16, 128});
  p.b.set_spin(0ns);
  std::atomic<pid_t> tid{0};
  std::vector<std::string> got;
  std::thread consumer([&] {
    tid = static_cast<pid_t>(::gettid());
    std::array<std::byte, 128> buf{};
    for (int i = 0; i < 2; ++i) {
      auto r = p.b.recv(buf, 10s);
      if (!r) return;
      got.emplace_back(reinterpret_cast<const char*>(buf.data()), *r);
    }
  });
  while (tid == 0 || !thread_sleeps(tid)) std::this_thread::yield();
  ASSERT_TRUE(p.a.send(bytes("quiet"), false).ok());
  EXPECT_EQ(p.a.stats().wakes, 0u) << "the consumer slept, and a quiet send woke it";
  ASSERT_TRUE(p.a.send(bytes("loud")).ok());
  consumer.join();
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0], "quiet");
  EXPECT_EQ(got[1], "loud");
  EXPECT_EQ(p.a.stats().wakes, 1u) << "only the waking send may issue a futex wake";
}

TEST(Channel, FullUntilTheConsumerFreesASlot) {
  ChannelGeometry g{8, 64};
  auto p = make_pair(g);
  std::array<std::byte, 56> msg{};
  for (uint64_t i = 0; i < g.slots; ++i) {
    fill_message(i, msg);
    ASSERT_TRUE(p.a.send(msg).ok()) << i;
  }
  fill_message(g.slots, msg);
  auto s = p.a.send(msg);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error(), ChannelError::full);
  std::array<std::byte, 56> buf{};
  auto r = p.b.try_recv(buf);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(check_message(0, std::span(buf).first(*r)));
  ASSERT_TRUE(p.a.send(msg).ok());  // the freed slot is reused
  for (uint64_t i = 1; i <= g.slots; ++i) {
    r = p.b.try_recv(buf);
    ASSERT_TRUE(r.ok()) << i;
    EXPECT_TRUE(check_message(i, std::span(buf).first(*r))) << i;
  }
  EXPECT_EQ(p.b.try_recv(buf).error(), ChannelError::empty);
}

TEST(Channel, SendWaitTimesOutOnAFullRingAndSendsNothing) {
  ChannelGeometry g{8, 64};
  auto p = make_pair(g);
  p.a.set_spin(0ns);
  std::array<std::byte, 56> msg{};
  for (uint64_t i = 0; i < g.slots; ++i) {
    fill_message(i, msg);
    ASSERT_TRUE(p.a.send_wait(msg, 0ns).ok()) << i;  // room: no waiting at all
  }
  fill_message(g.slots, msg);
  auto s = p.a.send_wait(msg, 20ms);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error(), ChannelError::timeout);
  EXPECT_EQ(p.a.stats().space_sleeps, 1u);
  std::array<std::byte, 56> buf{};
  for (uint64_t i = 0; i < g.slots; ++i) {
    auto r = p.b.try_recv(buf);
    ASSERT_TRUE(r.ok()) << i;
    EXPECT_TRUE(check_message(i, std::span(buf).first(*r))) << i;
  }
  EXPECT_EQ(p.b.try_recv(buf).error(), ChannelError::empty);
  // Too big is said at once, whatever the room.
  std::vector<std::byte> big(g.slot_size);
  auto t = p.a.send_wait(big, 10s);
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.error(), ChannelError::too_big);
}

// A producer waiting on a full ring (asleep, or about to be) gets its slot once the consumer has
// read the ring empty. ChannelStress.ProducersWaitingForRoomAreNeverLeftAsleep proves it asleep.
TEST(Channel, SendWaitIsWokenWhenTheConsumerReadsTheRingEmpty) {
  ChannelGeometry g{8, 64};
  auto p = make_pair(g);
  p.a.set_spin(0ns);
  std::array<std::byte, 56> msg{}, buf{};
  for (uint64_t i = 0; i < g.slots; ++i) {
    fill_message(i, msg);
    ASSERT_TRUE(p.a.send(msg).ok()) << i;
  }
  ChannelResult<void> sent = fail(ChannelError::empty);
  std::thread producer([&] {
    std::array<std::byte, 56> last{};
    fill_message(g.slots, last);
    sent = p.a.send_wait(last, 10s);
  });
  for (uint64_t i = 0; i <= g.slots; ++i) {
    auto r = p.b.recv(buf, 10s);  // the last one only once the producer got its slot
    ASSERT_TRUE(r.ok()) << i << ": " << channel_error_name(r.error());
    EXPECT_TRUE(check_message(i, std::span(buf).first(*r))) << i;
  }
  producer.join();
  EXPECT_TRUE(sent.ok());
}

TEST(Channel, TooBigIsRejectedAndLimitsAreExact) {
  ChannelGeometry g{4, 128};
  auto p = make_pair(g);
  std::vector<std::byte> big(g.max_message() + 1, std::byte{7});
  auto s = p.a.send(big);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error(), ChannelError::too_big);
  EXPECT_FALSE(p.a.broken());
  big.pop_back();
  ASSERT_TRUE(p.a.send(big).ok());                          // exactly max_message
  ASSERT_TRUE(p.a.send(std::span<const std::byte>()).ok());  // and empty
  std::vector<std::byte> buf(g.max_message() - 1);
  auto r = p.b.try_recv(buf);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error(), ChannelError::buffer_too_small);  // and it stays in the ring
  buf.resize(g.max_message());
  r = p.b.try_recv(buf);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, g.max_message());
  EXPECT_EQ(buf, big);
  r = p.b.try_recv(buf);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, 0u);
}

// Many laps around a small ring with random batch sizes on both sides; every byte checked.
void wrap_around(uint32_t start_index) {
  ChannelGeometry g{8, 128, start_index};
  auto p = make_pair(g);
  std::mt19937 rng(start_index);
  std::vector<std::byte> msg(g.max_message()), buf(g.max_message());
  uint64_t sent = 0, received = 0;
  const uint64_t total = 20000;
  while (received < total) {
    const auto burst = static_cast<unsigned>(1 + rng() % (g.slots + 2));
    for (unsigned i = 0; i < burst && sent < total; ++i) {
      const size_t n = message_size(sent, g.max_message());
      fill_message(sent, std::span(msg).first(n));
      auto s = p.a.send(std::span(msg).first(n));
      if (!s) {
        ASSERT_EQ(s.error(), ChannelError::full);
        ASSERT_EQ(sent - received, g.slots);
        break;
      }
      ++sent;
    }
    const auto take = static_cast<unsigned>(1 + rng() % (g.slots + 2));
    for (unsigned i = 0; i < take; ++i) {
      auto r = p.b.try_recv(buf);
      if (!r) {
        ASSERT_EQ(r.error(), ChannelError::empty);
        ASSERT_EQ(sent, received);
        break;
      }
      ASSERT_EQ(*r, message_size(received, g.max_message()));
      ASSERT_TRUE(check_message(received, std::span(buf).first(*r))) << received;
      ++received;
    }
  }
  EXPECT_EQ(p.a.stats().sent, total);
  EXPECT_FALSE(p.a.broken() || p.b.broken());
}

TEST(Channel, WrapsAroundTheRingManyTimes) { wrap_around(0); }
TEST(Channel, WrapsAroundThe32BitIndices) { wrap_around(0xFFFFFFFFu - 37); }

TEST(Channel, AttachChecksWhatItWasTold) {
  ChannelGeometry g{16, 128};
  auto c = Channel::create(g);
  ASSERT_TRUE(c.ok()) << c.error().message();
  // Another size: the memfd's size does not match.
  auto bad = Channel::attach(c->memfd.get(), ChannelGeometry{32, 128}, ChannelSide::b);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message().find("memfd size"), std::string::npos) << bad.error().message();
  // Same size, other start index: the header does not match.
  bad = Channel::attach(c->memfd.get(), ChannelGeometry{16, 128, 5}, ChannelSide::b);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message().find("header"), std::string::npos) << bad.error().message();
  // An unsealed memfd of the right size is refused: its owner could truncate it under us.
  UniqueFd plain(::memfd_create("unsealed", MFD_CLOEXEC));
  ASSERT_TRUE(plain.valid());
  ASSERT_EQ(::ftruncate(plain.get(), static_cast<off_t>(g.mapping_size())), 0);
  bad = Channel::attach(plain.get(), g, ChannelSide::b);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message().find("seal"), std::string::npos) << bad.error().message();
  EXPECT_TRUE(Channel::attach(c->memfd.get(), g, ChannelSide::b).ok());
}

// Direct attach (an instance forked for a start): no fd checks, no populate, but the header is
// still compared, and the channel works as one attached the checked way.
TEST(Channel, DirectAttachStillChecksTheHeader) {
  ChannelGeometry g{16, 128};
  auto c = Channel::create(g);
  ASSERT_TRUE(c.ok()) << c.error().message();
  auto bad = Channel::attach(c->memfd.get(), ChannelGeometry{16, 128, 5}, ChannelSide::b,
                             Channel::Attach::direct);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message().find("header"), std::string::npos) << bad.error().message();
  auto b = Channel::attach(c->memfd.get(), g, ChannelSide::b, Channel::Attach::direct);
  ASSERT_TRUE(b.ok()) << b.error().message();
  const char hi[] = "hi";
  ASSERT_TRUE(c->endpoint.send(std::as_bytes(std::span(hi, 2))).ok());
  std::byte buf[128];
  auto got = b->try_recv(buf);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(buf), *got), "hi");
}

TEST(Channel, ACrossProcessPeerEchoes) {
  ChannelGeometry g{32, 256};
  auto c = Channel::create(g);
  ASSERT_TRUE(c.ok());
  const int fd = c->memfd.get();
  auto child = test::fork_child([&] {
    auto b = Channel::attach(fd, g, ChannelSide::b);
    if (!b) return 2;
    std::vector<std::byte> buf(g.max_message());
    for (int i = 0; i < 1000; ++i) {
      auto r = b->recv(buf, 5s);
      if (!r) return 3;
      while (true) {
        auto s = b->send(std::span(buf).first(*r));
        if (s) break;
        if (s.error() != ChannelError::full) return 4;
      }
    }
    return 0;
  });
  Channel& a = c->endpoint;
  std::vector<std::byte> msg(g.max_message()), buf(g.max_message());
  for (uint64_t i = 0; i < 1000; ++i) {
    const size_t n = message_size(i, g.max_message());
    fill_message(i, std::span(msg).first(n));
    ASSERT_TRUE(a.send(std::span(msg).first(n)).ok());
    auto r = a.recv(buf, 5s);
    ASSERT_TRUE(r.ok()) << channel_error_name(r.error()) << " at " << i;
    ASSERT_TRUE(check_message(i, std::span(buf).first(*r)));
  }
  const int status = test::reap(child, 5s);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
}

TEST(Channel, MemfdIsSealedAgainstThePeer) {
  ChannelGeometry g{16, 128};
  auto c = Channel::create(g);
  ASSERT_TRUE(c.ok());
  const int fd = c->memfd.get();
  const int seals = ::fcntl(fd, F_GET_SEALS);
  EXPECT_EQ(seals & (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL),
            F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
  EXPECT_EQ(seals & F_SEAL_WRITE, 0);
  const auto size = static_cast<off_t>(g.mapping_size());
  // A peer process tries to shrink (SIGBUS in the supervisor), grow, and re-seal the memfd.
  auto child = test::fork_child([&] {
    int failures = 0;
    failures += ::ftruncate(fd, 0) != 0 && errno == EPERM;
    failures += ::ftruncate(fd, size / 2) != 0 && errno == EPERM;
    failures += ::ftruncate(fd, size * 2) != 0 && errno == EPERM;
    failures += ::fallocate(fd, 0, 0, size * 2) != 0 && errno == EPERM;
    failures += ::fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE) != 0 && errno == EPERM;
    return failures == 5 ? 0 : 1;
  });
  const int status = test::reap(child, 5s);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  struct stat st{};
  ASSERT_EQ(::fstat(fd, &st), 0);
  EXPECT_EQ(st.st_size, size);
  // The whole mapping is still there: fill ring 0 (its last slot is near the end of ring 0).
  auto b = Channel::attach(fd, g, ChannelSide::b);
  ASSERT_TRUE(b.ok());
  std::array<std::byte, 64> msg{};
  for (unsigned i = 0; i < g.slots; ++i) ASSERT_TRUE(b->send(msg).ok());
  std::array<std::byte, 120> buf{};
  for (unsigned i = 0; i < g.slots; ++i) ASSERT_TRUE(c->endpoint.try_recv(buf).ok());
}

// exec'd programs inherit the memfd only when the caller means it (an explicit dup2).
TEST(Channel, MemfdIsNotInheritedAcrossExec) {
  auto c = Channel::create({8, 64});
  ASSERT_TRUE(c.ok());
  const int fd = c->memfd.get();
  EXPECT_TRUE(::fcntl(fd, F_GETFD) & FD_CLOEXEC);
  auto exec_probe = [](int probe_fd, bool clear_cloexec) {
    return test::fork_child([=] {
      if (clear_cloexec && ::fcntl(probe_fd, F_SETFD, 0) != 0) return 9;
      const std::string script = "[ -e /proc/self/fd/" + std::to_string(probe_fd) + " ]";
      ::execl("/bin/sh", "sh", "-c", script.c_str(), static_cast<char*>(nullptr));
      return 8;
    });
  };
  auto child = exec_probe(fd, false);
  int status = test::reap(child, 10s);
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 1) << "the channel memfd leaked into an exec'd program";
  child = exec_probe(fd, true);  // the intended way: clear FD_CLOEXEC in the child before exec
  status = test::reap(child, 10s);
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 0) << "the probe cannot see an inherited fd";
}

}  // namespace
}  // namespace plume::fwp
