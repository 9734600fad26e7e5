// No lost wake-ups: ping-pong and acknowledged bursts with consumers that sleep at once (spin 0),
// between two threads and between two processes. Every wait has a bounded timeout, so a lost
// wake-up fails the test (the side that waits for a reply that was sent but never rung would
// otherwise hang). PLUME_CHANNEL_STRESS_SCALE=N multiplies the message counts.
#include <sys/wait.h>

#include <array>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "channel/channel_fixture.h"
#include "plume/fwp/channel.h"

namespace plume::fwp {
namespace {

using namespace std::chrono_literals;

// Far above any legitimate wake-up latency, and above the multi-second stalls that a shared,
// overloaded 2-vCPU CI machine shows now and then (both sides of a test stall together).
constexpr auto kLostWakeup = 10s;

uint64_t scaled(uint64_t n) {
  const char* s = std::getenv("PLUME_CHANNEL_STRESS_SCALE");
  const uint64_t k = s ? std::strtoull(s, nullptr, 10) : 1;
  return n * (k == 0 ? 1 : k);
}

// Receives `rounds` messages, each answered at once; returns 0 or where it failed.
int echo_side(Channel& ch, uint64_t rounds) {
  std::array<std::byte, 64> buf{};
  for (uint64_t i = 0; i < rounds; ++i) {
    auto r = ch.recv(buf, kLostWakeup);
    if (!r) return 10 + static_cast<int>(r.error());
    uint64_t seq = 0;
    std::memcpy(&seq, buf.data(), sizeof seq);
    if (seq != i) return 30;
    if (!ch.send(std::span(buf).first(*r))) return 31;
  }
  return 0;
}

// Sends `rounds` pings and waits for each pong; gtest assertions on the calling side.
void ping_side(Channel& ch, uint64_t rounds) {
  std::array<std::byte, 64> msg{}, buf{};
  for (uint64_t i = 0; i < rounds; ++i) {
    std::memcpy(msg.data(), &i, sizeof i);
    ASSERT_TRUE(ch.send(msg).ok()) << i;
    auto r = ch.recv(buf, kLostWakeup);
    ASSERT_TRUE(r.ok()) << "round " << i << ": " << channel_error_name(r.error())
                        << " (a lost wake-up if timeout)";
    ASSERT_EQ(std::memcmp(buf.data(), msg.data(), msg.size()), 0);
  }
}

struct Pair {
  ChannelGeometry g;
  UniqueFd fd;
  Channel a;
};

Pair create(ChannelGeometry g) {
  auto c = Channel::create(g);
  if (!c) throw std::runtime_error(c.error().message());
  return Pair{g, std::move(c->memfd), std::move(c->endpoint)};
}

// A child process running fn on side b of the channel, attached with spin 0 (a consumer that
// sleeps at once); it exits 2 when it cannot attach.
test::Child spawn_peer(const Pair& p, const std::function<int(Channel&)>& fn) {
  const int fd = p.fd.get();
  const ChannelGeometry g = p.g;
  return test::fork_child([fd, g, &fn] {
    auto b = Channel::attach(fd, g, ChannelSide::b);
    if (!b) return 2;
    b->set_spin(0ns);
    return fn(*b);
  });
}

TEST(ChannelStress, ThreadsPingPongWithSleepingConsumers) {
  auto p = create({8, 128});
  auto b = Channel::attach(p.fd.get(), p.g, ChannelSide::b);
  ASSERT_TRUE(b.ok());
  p.a.set_spin(0ns);
  b->set_spin(0ns);
  const uint64_t rounds = scaled(50000);
  int echo_rc = -1;
  std::thread t([&] { echo_rc = echo_side(*b, rounds); });
  ping_side(p.a, rounds);
  t.join();
  EXPECT_EQ(echo_rc, 0);
  // Both consumers really slept (else the test proved nothing about wake-ups).
  EXPECT_GT(p.a.stats().sleeps, rounds / 10);
  EXPECT_GT(b->stats().sleeps, rounds / 10);
  EXPECT_GT(p.a.stats().wakes, 0u);
}

TEST(ChannelStress, ProcessesPingPongWithSleepingConsumers) {
  auto p = create({8, 128});
  const uint64_t rounds = scaled(50000);
  auto child = spawn_peer(p, [&](Channel& b) {
    const int rc = echo_side(b, rounds);
    if (rc != 0) return rc;
    return b.stats().sleeps > rounds / 10 ? 0 : 40;
  });
  p.a.set_spin(0ns);
  ping_side(p.a, rounds);
  EXPECT_GT(p.a.stats().sleeps, rounds / 10);
  const int status = test::reap(child, 20s);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
}

// Bursts of random length (often more than the ring holds, so the producer meets "full") from a
// child process; the parent acknowledges each burst, and the child waits for the ack before the
// next one, so a lost wake-up in either direction stalls a waiter until its timeout.
TEST(ChannelStress, ProcessBurstsWithAcknowledgements) {
  auto p = create({32, 64});
  const uint64_t total = scaled(1'000'000);
  auto child = spawn_peer(p, [&](Channel& b) {
    std::mt19937 rng(7);
    std::array<std::byte, 16> msg{}, ack{};
    uint64_t seq = 0;
    while (seq < total) {
      const uint64_t burst = std::min<uint64_t>(1 + rng() % 100, total - seq);
      for (uint64_t i = 0; i < burst; ++i, ++seq) {
        const uint64_t last = i + 1 == burst;
        std::memcpy(msg.data(), &seq, 8);
        std::memcpy(msg.data() + 8, &last, 8);
        for (const auto until = std::chrono::steady_clock::now() + kLostWakeup;;) {
          auto r = b.send(msg);
          if (r) break;
          if (r.error() != ChannelError::full) return 3;
          if (std::chrono::steady_clock::now() > until) return 4;  // the parent stopped reading
          std::this_thread::yield();
        }
      }
      auto r = b.recv(ack, kLostWakeup);
      if (!r) return 10 + static_cast<int>(r.error());
    }
    return 0;
  });
  p.a.set_spin(0ns);
  std::array<std::byte, 16> buf{};
  uint64_t bursts = 0;
  for (uint64_t i = 0; i < total; ++i) {
    auto r = p.a.recv(buf, kLostWakeup);
    ASSERT_TRUE(r.ok()) << "message " << i << ": " << channel_error_name(r.error());
    uint64_t seq = 0, last = 0;
    std::memcpy(&seq, buf.data(), 8);
    std::memcpy(&last, buf.data() + 8, 8);
    ASSERT_EQ(seq, i);
    if (last) {
      ASSERT_TRUE(p.a.send(std::span(buf).first(8)).ok());
      ++bursts;
    }
  }
  EXPECT_GT(p.a.stats().sleeps, bursts / 4) << "the consumer hardly slept";
  const int status = test::reap(child, 20s);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
}

// A producer that outpaces its consumer sleeps on the space bell (spin 0) and must always be woken:
// a child sends with send_wait into a small ring while the parent reads in bursts with pauses of
// busy work between them, so the ring fills again and again. A lost wake-up leaves the child
// asleep until its bound, and it fails.
TEST(ChannelStress, ProducersWaitingForRoomAreNeverLeftAsleep) {
  auto p = create({8, 64});
  const uint64_t total = scaled(300'000);
  auto child = spawn_peer(p, [&](Channel& b) {
    std::array<std::byte, 8> msg{};
    for (uint64_t seq = 0; seq < total; ++seq) {
      std::memcpy(msg.data(), &seq, 8);
      const auto t0 = std::chrono::steady_clock::now();
      auto r = b.send_wait(msg, kLostWakeup);
      if (!r) return 10 + static_cast<int>(r.error());
      // A wait that ran to its bound found room only because the deadline's re-check did.
      if (std::chrono::steady_clock::now() - t0 >= kLostWakeup) return 41;
    }
    return b.stats().space_sleeps > total / 1000 ? 0 : 40;  // it really slept
  });
  p.a.set_spin(0ns);
  std::mt19937 rng(11);
  std::array<std::byte, 8> buf{};
  for (uint64_t i = 0; i < total;) {
    for (uint64_t burst = 1 + rng() % 24; burst > 0 && i < total; --burst, ++i) {
      auto r = p.a.recv(buf, kLostWakeup);
      ASSERT_TRUE(r.ok()) << "message " << i << ": " << channel_error_name(r.error());
      uint64_t seq = 0;
      std::memcpy(&seq, buf.data(), 8);
      ASSERT_EQ(seq, i);
    }
    // Work between bursts, long enough for the producer to fill the ring and go to sleep.
    for (uint64_t spin = rng() % 4000; spin > 0; --spin) asm volatile("" ::: "memory");
  }
  EXPECT_GT(p.a.stats().space_wakes, 0u);
  const int status = test::reap(child, 20s);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
}

}  // namespace
}  // namespace plume::fwp
