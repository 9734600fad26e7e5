// A hostile or dying peer: whatever it writes into the shared mapping, the other endpoint reports
// ChannelError::corrupt (or keeps working) and never crashes, hangs or reads out of bounds (the
// receive buffers are heap vectors of exactly max_message bytes, so ASan sees any overflow). A peer
// killed mid-stream leaves every published message intact and nothing torn.
#include <fcntl.h>
#include <linux/futex.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <memory>
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
using test::check_message;
using test::fill_message;
using test::message_size;
using test::RawMapping;
using test::ring_offsets;

// The supervisor's endpoint (side a) and what the worker sees: its own endpoint and a raw mapping.
struct Setup {
  ChannelGeometry g;
  UniqueFd fd;
  Channel sup;
  Channel worker;
  std::unique_ptr<RawMapping> raw;
  uint32_t* word(size_t offset) const { return raw->word_at(offset); }
};

Setup setup(ChannelGeometry g) {
  auto c = Channel::create(g);
  if (!c) throw std::runtime_error(c.error().message());
  auto w = Channel::attach(c->memfd.get(), g, ChannelSide::b);
  if (!w) throw std::runtime_error(w.error().message());
  auto raw = std::make_unique<RawMapping>(c->memfd.get(), g.mapping_size());
  return Setup{g, std::move(c->memfd), std::move(c->endpoint), std::move(*w), std::move(raw)};
}

void expect_dead(Channel& ch) {
  EXPECT_TRUE(ch.broken());
  std::vector<std::byte> buf(ch.max_message());
  std::array<std::byte, 8> msg{};
  auto r = ch.try_recv(buf);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error(), ChannelError::corrupt);
  auto s = ch.send(msg);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error(), ChannelError::corrupt);
  auto w = ch.wait_readable(10ms);
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.error(), ChannelError::corrupt);
}

// Ring 1 carries worker → supervisor messages; ring 0 supervisor → worker.
TEST(ChannelHostile, ProducerIndexFarAheadIsCorrupt) {
  auto s = setup({16, 128, 1000});
  *s.word(ring_offsets(s.g, 1).producer) = 1000 + 16 * 5;
  std::vector<std::byte> buf(s.sup.max_message());
  auto r = s.sup.try_recv(buf);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error(), ChannelError::corrupt);
  expect_dead(s.sup);
}

TEST(ChannelHostile, ProducerIndexGoingBackwardsIsCorrupt) {
  auto s = setup({16, 128, 1000});
  std::array<std::byte, 16> msg{};
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(s.worker.send(msg).ok());
  std::vector<std::byte> buf(s.sup.max_message());
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(s.sup.try_recv(buf).ok());
  *s.word(ring_offsets(s.g, 1).producer) = 1002;  // un-publishes a message already read
  auto r = s.sup.try_recv(buf);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error(), ChannelError::corrupt);
  expect_dead(s.sup);
}

TEST(ChannelHostile, HugeOrOversizedLengthIsCorrupt) {
  for (uint32_t bad_len : {0xFFFFFFFFu, 121u, 0x80000000u}) {
    auto s = setup({8, 128});
    std::array<std::byte, 16> msg{};
    ASSERT_TRUE(s.worker.send(msg).ok());
    *s.word(ring_offsets(s.g, 1).slots) = bad_len;  // the published slot's length field
    std::vector<std::byte> buf(s.sup.max_message());
    auto r = s.sup.try_recv(buf);
    ASSERT_FALSE(r.ok()) << bad_len;
    EXPECT_EQ(r.error(), ChannelError::corrupt) << bad_len;
    expect_dead(s.sup);
  }
  // max_message itself is legal even when the peer fills the slot directly.
  auto s = setup({8, 128});
  std::array<std::byte, 16> msg{};
  ASSERT_TRUE(s.worker.send(msg).ok());
  *s.word(ring_offsets(s.g, 1).slots) = 120;
  std::vector<std::byte> buf(120);
  auto r = s.sup.try_recv(buf);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, 120u);
}

TEST(ChannelHostile, ConsumerIndexBeyondWhatWasSentIsCorrupt) {
  auto s = setup({8, 64, 50});
  std::array<std::byte, 8> msg{};
  for (int i = 0; i < 8; ++i) ASSERT_TRUE(s.sup.send(msg).ok());
  *s.word(ring_offsets(s.g, 0).consumer) = 50 + 8 + 3;  // "consumed" three never sent
  auto r = s.sup.send(msg);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error(), ChannelError::corrupt);
  expect_dead(s.sup);
}

TEST(ChannelHostile, SendCapacityCatchesALyingConsumerIndex) {
  auto s = setup({8, 64, 50});
  std::array<std::byte, 8> msg{};
  for (int i = 0; i < 2; ++i) ASSERT_TRUE(s.sup.send(msg).ok());
  *s.word(ring_offsets(s.g, 0).consumer) = 50 + 5;  // "consumed" three never sent
  auto r = s.sup.send_capacity();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error(), ChannelError::corrupt);
  expect_dead(s.sup);
}

// The doorbell is the one word the worker may write (1 → 2). Scribbling it can only end an async
// waiter's wait early, with nothing to read: the waiter must be able to tell.
TEST(ChannelHostile, ScribbledDoorbellEndsAnAsyncWaitWithNothingToRead) {
  auto s = setup({8, 64});
  auto armed = s.sup.begin_async_wait();
  ASSERT_TRUE(armed.ok());
  ASSERT_FALSE(armed.value());
  *s.word(ring_offsets(s.g, 1).doorbell) = 7;
  EXPECT_NE(std::atomic_ref<uint32_t>(*s.sup.async_wait_word()).load(), Channel::kAsyncWaitValue);
  s.sup.end_async_wait();
  std::vector<std::byte> buf(s.sup.max_message());
  auto r = s.sup.try_recv(buf);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error(), ChannelError::empty);
  EXPECT_FALSE(s.sup.broken());
}

TEST(ChannelHostile, ConsumerIndexGoingBackwardsIsCorrupt) {
  auto s = setup({8, 64, 50});
  std::array<std::byte, 8> msg{};
  std::vector<std::byte> buf(s.worker.max_message());
  for (int i = 0; i < 8; ++i) ASSERT_TRUE(s.sup.send(msg).ok());
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(s.worker.try_recv(buf).ok());
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(s.sup.send(msg).ok());  // sup saw consumer = 54
  *s.word(ring_offsets(s.g, 0).consumer) = 52;
  auto r = s.sup.send(msg);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error(), ChannelError::corrupt);
}

// Without F_SEAL_WRITE the peer may punch holes; shmem holes read back as zeros (no SIGBUS), and
// zeroed indices are caught as going backwards.
TEST(ChannelHostile, PunchedHoleReadsAsZerosAndIsCaught) {
  auto s = setup({8, 128, 100});
  std::array<std::byte, 32> msg{};
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(s.worker.send(msg).ok());
  std::vector<std::byte> buf(s.sup.max_message());
  ASSERT_TRUE(s.sup.try_recv(buf).ok());
  ASSERT_EQ(::fallocate(s.fd.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0,
                        static_cast<off_t>(s.g.mapping_size())),
            0);
  bool corrupt = false;
  for (int i = 0; i < 8 && !corrupt; ++i) {
    auto r = s.sup.try_recv(buf);
    if (!r) {
      corrupt = r.error() == ChannelError::corrupt;
    } else {
      EXPECT_EQ(*r, 0u);
    }  // messages already announced: their slots now read as length 0
  }
  EXPECT_TRUE(corrupt);
}

// A peer process that writes 0, 1, 2, 0, … into the word at `offset` of the channel's mapping
// until it is killed: one of its bells, scribbled as fast as it can.
test::Child hammer_word(const Setup& s, size_t offset) {
  const int fd = s.fd.get();
  const ChannelGeometry g = s.g;
  return test::fork_child([fd, g, offset] {
    RawMapping raw(fd, g.mapping_size());
    uint32_t* bell = raw.word_at(offset);
    for (uint32_t i = 0;; ++i) std::atomic_ref<uint32_t>(*bell).store(i % 3);
    return 0;
  });
}

// Three waits of 40 ms (`wait` returns how one failed), each ending in a timeout, not later.
void expect_each_wait_times_out(const std::function<ChannelError()>& wait) {
  for (int i = 0; i < 3; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    EXPECT_EQ(wait(), ChannelError::timeout);
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);
  }
}

// A peer that keeps writing the doorbell cannot make the waiter hang past its deadline.
TEST(ChannelHostile, DoorbellScribblingCannotOutlastTheTimeout) {
  auto s = setup({8, 64});
  auto child = hammer_word(s, ring_offsets(s.g, 1).doorbell);
  std::vector<std::byte> buf(s.sup.max_message());
  s.sup.set_spin(0ns);
  expect_each_wait_times_out([&] {
    auto r = s.sup.recv(buf, 40ms);
    return r.ok() ? ChannelError::empty : r.error();  // a message from nowhere: not a timeout
  });
  test::reap(child, 0ms);
}

// The space bell is the one word of ring 0 besides its consumer index that the worker may write
// (1 → 2). Scribbling it can only end a waiting sender's sleep early, again and again: the sender
// still gives up at its deadline, and its channel is not broken by it.
TEST(ChannelHostile, SpaceBellScribblingCannotOutlastASendersTimeout) {
  auto s = setup({8, 64});
  std::array<std::byte, 8> msg{};
  for (uint32_t i = 0; i < s.g.slots; ++i) ASSERT_TRUE(s.sup.send(msg).ok());
  auto child = hammer_word(s, ring_offsets(s.g, 0).space);
  s.sup.set_spin(0ns);
  expect_each_wait_times_out([&] {
    auto r = s.sup.send_wait(msg, 40ms);
    return r.ok() ? ChannelError::full : r.error();  // room from nowhere: not a timeout
  });
  test::reap(child, 0ms);
  EXPECT_FALSE(s.sup.broken());
}

// A sender waiting for room checks the consumer index it waits on like every other read of it.
TEST(ChannelHostile, AConsumerIndexThatLiesBreaksAWaitingSender) {
  auto s = setup({8, 64, 50});
  std::array<std::byte, 8> msg{};
  for (uint32_t i = 0; i < s.g.slots; ++i) ASSERT_TRUE(s.sup.send(msg).ok());
  s.sup.set_spin(0ns);
  std::thread liar([&] {
    // Once the sender sleeps (its bell says so), "consume" more than was ever sent, and ring.
    uint32_t* bell = s.word(ring_offsets(s.g, 0).space);
    for (const auto until = std::chrono::steady_clock::now() + 10s;
         std::atomic_ref<uint32_t>(*bell).load() != 1 && std::chrono::steady_clock::now() < until;)
      std::this_thread::yield();
    std::atomic_ref<uint32_t>(*s.word(ring_offsets(s.g, 0).consumer)).store(50 + 100);
    std::atomic_ref<uint32_t>(*bell).store(2);
    ::syscall(SYS_futex, bell, FUTEX_WAKE, 1, nullptr, nullptr, 0);
  });
  auto r = s.sup.send_wait(msg, 10s);
  liar.join();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error(), ChannelError::corrupt);
  expect_dead(s.sup);
}

// plumed's way of waiting for room (in its loop) checks the index as send_wait does.
TEST(ChannelHostile, AConsumerIndexThatLiesBreaksAnAsyncSpaceWaiter) {
  auto s = setup({8, 64, 50});
  std::array<std::byte, 8> msg{};
  for (uint32_t i = 0; i < s.g.slots; ++i) ASSERT_TRUE(s.sup.send(msg).ok());
  std::atomic_ref<uint32_t>(*s.word(ring_offsets(s.g, 0).consumer)).store(50 + 100);
  auto armed = s.sup.begin_async_space_wait(1);
  ASSERT_FALSE(armed.ok());
  EXPECT_EQ(armed.error(), ChannelError::corrupt);
  EXPECT_EQ(std::atomic_ref<uint32_t>(*s.sup.async_space_word()).load(), 0u) << "left announcing a wait";
  expect_dead(s.sup);
}

// Random words at random offsets of the whole mapping (header, indices, doorbells, slots), mixed
// with legitimate traffic, decided by a seeded generator so a failure can be replayed.
TEST(ChannelHostile, RandomScribblesNeverCrashTheReader) {
  int corrupt_seen = 0;
  for (uint32_t seed = 1; seed <= 400; ++seed) {
    std::mt19937 rng(seed);
    auto s = setup({8, 128, static_cast<uint32_t>(rng())});
    std::vector<std::byte> buf(s.sup.max_message()), msg(s.sup.max_message());
    for (int step = 0; step < 200; ++step) {
      switch (rng() % 5) {
        case 0: {  // the peer scribbles one word; often an index, to hit the checks
          size_t off = (rng() % (s.g.mapping_size() / 4)) * 4;
          if (rng() % 2) {
            const auto ring = ring_offsets(s.g, rng() % 2);
            const size_t picks[] = {ring.producer, ring.consumer, ring.doorbell, ring.slots};
            off = picks[rng() % 4];
          }
          *s.word(off) = static_cast<uint32_t>(rng() % 3 ? rng() : *s.word(off) + rng() % 20);
          break;
        }
        case 1:
          (void)s.worker.send(std::span(msg).first(rng() % msg.size()));
          break;
        case 2:
          (void)s.worker.try_recv(buf);
          break;
        case 3: {
          auto r = s.sup.try_recv(buf);
          if (r) {
            ASSERT_LE(*r, s.sup.max_message());
          } else {
            ASSERT_TRUE(r.error() == ChannelError::empty || r.error() == ChannelError::corrupt);
          }
          break;
        }
        case 4: {
          auto r = s.sup.send(std::span(msg).first(rng() % msg.size()));
          if (!r) {
            ASSERT_TRUE(r.error() == ChannelError::full || r.error() == ChannelError::corrupt);
          }
          break;
        }
      }
    }
    corrupt_seen += s.sup.broken();
  }
  // Most runs must end with the supervisor having caught the scribbles.
  EXPECT_GT(corrupt_seen, 200);
}

// A real process scribbling concurrently while the supervisor receives and sends.
TEST(ChannelHostile, ConcurrentScribblerProcess) {
  for (uint32_t seed = 1; seed <= 5; ++seed) {
    auto s = setup({16, 256});
    const int fd = s.fd.get();
    const ChannelGeometry g = s.g;
    auto child = test::fork_child([&] {
      auto w = Channel::attach(fd, g, ChannelSide::b);
      if (!w) return 2;
      RawMapping raw(fd, g.mapping_size());
      std::mt19937 rng(seed);
      std::vector<std::byte> m(g.max_message());
      for (uint64_t i = 0;; ++i) {
        if (i < 2000) {  // first behave, so the supervisor is mid-stream when it turns hostile
          (void)w->send(std::span(m).first(i % m.size()));
          continue;
        }
        auto* p = raw.word_at((rng() % (g.mapping_size() / 4)) * 4);
        std::atomic_ref<uint32_t>(*p).store(static_cast<uint32_t>(rng()), std::memory_order_relaxed);
      }
      return 0;
    });
    std::vector<std::byte> buf(s.sup.max_message());
    std::array<std::byte, 64> msg{};
    const auto deadline = std::chrono::steady_clock::now() + 2s;
    while (!s.sup.broken() && std::chrono::steady_clock::now() < deadline) {
      auto r = s.sup.recv(buf, 1ms);
      if (r) {
        ASSERT_LE(*r, s.sup.max_message());
      } else {
        ASSERT_TRUE(r.error() == ChannelError::timeout || r.error() == ChannelError::corrupt);
      }
      (void)s.sup.send(msg);
    }
    EXPECT_TRUE(s.sup.broken()) << "seed " << seed << ": 2 s of scribbling went unnoticed";
    expect_dead(s.sup);
    test::reap(child, 0ms);
  }
}

// The deterministic version of dying mid-message: the peer publishes three messages, starts a
// fourth by writing its slot directly (length and half the payload) and dies before publishing.
TEST(ChannelHostile, HalfWrittenMessageOfADeadPeerIsInvisible) {
  auto s = setup({8, 256});
  const int fd = s.fd.get();
  const ChannelGeometry g = s.g;
  auto child = test::fork_child([&] {
    auto w = Channel::attach(fd, g, ChannelSide::b);
    if (!w) return 2;
    std::vector<std::byte> m(g.max_message());
    for (uint64_t i = 0; i < 3; ++i) {
      fill_message(i, m);
      if (!w->send(m)) return 3;
    }
    RawMapping raw(fd, g.mapping_size());
    std::byte* next = raw.data() + ring_offsets(g, 1).slots + 3 * g.slot_size;
    fill_message(3, m);
    const uint32_t len = static_cast<uint32_t>(m.size());
    std::memcpy(next, &len, sizeof len);
    std::memcpy(next + 8, m.data(), m.size() / 2);
    ::raise(SIGKILL);
    return 4;
  });
  ASSERT_TRUE(test::wait_exited(child, 10s));
  const int status = test::reap(child, 0ms);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << status;
  std::vector<std::byte> buf(s.sup.max_message());
  for (uint64_t i = 0; i < 3; ++i) {
    auto r = s.sup.try_recv(buf);
    ASSERT_TRUE(r.ok()) << i;
    EXPECT_TRUE(check_message(i, std::span(buf).first(*r))) << i;
  }
  auto r = s.sup.recv(buf, 20ms);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error(), ChannelError::timeout);
  EXPECT_FALSE(s.sup.broken());
}

// SIGKILL at a random moment of a fast send loop (large slots, so the kill often lands in a
// copy): everything published is intact and in order; then the ring is empty, and the caller
// learns of the death from the pidfd while recv times out.
TEST(ChannelHostile, PeerKilledMidStreamLeavesEverythingPublishedIntact) {
  for (int round = 0; round < 5; ++round) {
    auto s = setup({16, 4096});
    const int fd = s.fd.get();
    const ChannelGeometry g = s.g;
    auto child = test::fork_child([&] {
      auto w = Channel::attach(fd, g, ChannelSide::b);
      if (!w) return 2;
      std::vector<std::byte> m(g.max_message());
      for (uint64_t i = 0;; ++i) {
        const size_t n = message_size(i, m.size());
        fill_message(i, std::span(m).first(n));
        while (true) {
          auto r = w->send(std::span(m).first(n));
          if (r) break;
          if (r.error() != ChannelError::full) return 3;
        }
      }
      return 0;
    });
    std::vector<std::byte> buf(s.sup.max_message());
    uint64_t next = 0;
    const uint64_t kill_at = 3000 + static_cast<uint64_t>(round) * 1777;
    bool killed = false;
    while (true) {
      if (!killed && next >= kill_at) {
        ASSERT_EQ(::kill(child.pid, SIGKILL), 0);
        killed = true;
      }
      auto r = s.sup.recv(buf, killed ? 50ms : 5s);
      if (!r) {
        ASSERT_EQ(r.error(), ChannelError::timeout) << "at message " << next;
        if (killed && test::wait_exited(child, 0ms)) break;  // drained, and the peer is dead
        ASSERT_TRUE(killed) << "the live peer stopped sending at " << next;
        continue;
      }
      ASSERT_EQ(*r, message_size(next, s.sup.max_message())) << next;
      ASSERT_TRUE(check_message(next, std::span(buf).first(*r))) << "torn message " << next;
      ++next;
    }
    EXPECT_GE(next, kill_at);
    EXPECT_FALSE(s.sup.broken());
    const int status = test::reap(child, 5s);
    EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << status;
  }
}

}  // namespace
}  // namespace plume::fwp
