// EventLoop on a real io_uring: polls on real pipes, real io_uring timeouts, cancellation races.
#include "plume/kernel/event_loop.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <thread>
#include <vector>

#include "http_test_util.h"
#include "plume/base/unique_fd.h"

namespace plume::kernel {
namespace {

using namespace std::chrono_literals;
using test::run_until;

struct Pipe {
  UniqueFd r, w;
  Pipe() {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC | O_NONBLOCK) == 0) {
      r.reset(fds[0]);
      w.reset(fds[1]);
    }
  }
  void put(char c = 'x') const { ASSERT_EQ(::write(w.get(), &c, 1), 1); }
};

std::unique_ptr<EventLoop> make_loop() {
  auto loop = EventLoop::create(64);
  EXPECT_TRUE(loop.ok()) << (loop.ok() ? "" : loop.error().message());
  return loop.ok() ? std::move(loop).value() : nullptr;
}

double cpu_seconds() {
  rusage ru{};
  ::getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

TEST(EventLoop, PollFiresWhenPipeBecomesReadable) {
  auto loop = make_loop();
  ASSERT_TRUE(loop);
  Pipe p;
  int result = 0;
  int calls = 0;
  loop->poll(p.r.get(), POLLIN, [&](int res) {
    result = res;
    ++calls;
  });
  ASSERT_TRUE(loop->run_once(false).ok());
  EXPECT_EQ(calls, 0) << "fired before the pipe had data";
  EXPECT_EQ(loop->pending(), 1U);

  p.put();
  ASSERT_TRUE(run_until(*loop, [&] { return calls > 0; }));
  EXPECT_EQ(calls, 1);
  EXPECT_TRUE((result & POLLIN) != 0) << "revents=" << result;
  EXPECT_EQ(loop->pending(), 0U);
}

TEST(EventLoop, PollCanReArmFromItsCallback) {
  auto loop = make_loop();
  ASSERT_TRUE(loop);
  Pipe p;
  int reads = 0;
  std::function<void(int)> on_readable = [&](int) {
    char c;
    while (::read(p.r.get(), &c, 1) == 1) ++reads;
    if (reads < 3) {
      loop->poll(p.r.get(), POLLIN, on_readable);
      p.put();
    }
  };
  loop->poll(p.r.get(), POLLIN, on_readable);
  p.put();
  ASSERT_TRUE(run_until(*loop, [&] { return reads >= 3; }));
  EXPECT_EQ(reads, 3);
  EXPECT_EQ(loop->pending(), 0U);
}

TEST(EventLoop, TimersFireInDeadlineOrder) {
  auto loop = make_loop();
  ASSERT_TRUE(loop);
  std::vector<int> order;
  auto t0 = std::chrono::steady_clock::now();
  loop->after(60ms, [&] { order.push_back(60); });
  loop->after(20ms, [&] { order.push_back(20); });
  loop->after(40ms, [&] { order.push_back(40); });
  loop->after(0ms, [&] { order.push_back(0); });
  ASSERT_TRUE(run_until(*loop, [&] { return order.size() == 4; }));
  EXPECT_EQ(order, (std::vector<int>{0, 20, 40, 60}));
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 60ms);
}

TEST(EventLoop, CancelledTimerNeverRuns) {
  auto loop = make_loop();
  ASSERT_TRUE(loop);
  bool cancelled_ran = false;
  bool sentinel = false;
  auto id = loop->after(10ms, [&] { cancelled_ran = true; });
  loop->after(50ms, [&] { sentinel = true; });
  loop->cancel(id);
  EXPECT_EQ(loop->pending(), 1U);
  ASSERT_TRUE(run_until(*loop, [&] { return sentinel; }));
  EXPECT_FALSE(cancelled_ran);
  loop->cancel(id);      // twice: ignored
  loop->cancel(987654);  // unknown: ignored
  EXPECT_EQ(loop->pending(), 0U);
}

TEST(EventLoop, CancelledPollOnReadyFdNeverRuns) {
  auto loop = make_loop();
  ASSERT_TRUE(loop);
  Pipe p;
  p.put();  // ready before the poll is even submitted
  bool ran = false;
  auto id = loop->poll(p.r.get(), POLLIN, [&](int) { ran = true; });
  loop->cancel(id);
  bool sentinel = false;
  loop->after(30ms, [&] { sentinel = true; });
  ASSERT_TRUE(run_until(*loop, [&] { return sentinel; }));
  EXPECT_FALSE(ran);
}

// Both polls complete at submit time, so their CQEs arrive in one batch; the first callback to
// run cancels the other, whose CQE is already in the batch: it must not run.
TEST(EventLoop, CancelFromAnotherCallbackInTheSameBatch) {
  auto loop = make_loop();
  ASSERT_TRUE(loop);
  Pipe p;
  p.put();
  int ran = 0;
  EventLoop::OpId a = 0;
  EventLoop::OpId b = 0;
  a = loop->poll(p.r.get(), POLLIN, [&](int) {
    ++ran;
    loop->cancel(b);
  });
  b = loop->poll(p.r.get(), POLLIN, [&](int) {
    ++ran;
    loop->cancel(a);
  });
  ASSERT_TRUE(loop->run_once(true).ok());
  EXPECT_EQ(ran, 1);
  // The same with timers that have both expired by the time the loop looks.
  int timers = 0;
  EventLoop::OpId t1 = 0;
  EventLoop::OpId t2 = 0;
  t1 = loop->after(0ms, [&] {
    ++timers;
    loop->cancel(t2);
  });
  t2 = loop->after(0ms, [&] {
    ++timers;
    loop->cancel(t1);
  });
  bool done = false;
  loop->after(30ms, [&] { done = true; });
  ASSERT_TRUE(run_until(*loop, [&] { return done; }));
  EXPECT_EQ(timers, 1);
  EXPECT_EQ(loop->pending(), 0U);
}

TEST(EventLoop, CallbackMayCancelItsOwnReArm) {
  auto loop = make_loop();
  ASSERT_TRUE(loop);
  Pipe p;
  p.put();
  int ran = 0;
  loop->poll(p.r.get(), POLLIN, [&](int) {
    ++ran;
    auto again = loop->poll(p.r.get(), POLLIN, [&](int) { ++ran; });  // would fire: still readable
    loop->cancel(again);
  });
  // run() returns on its own once nothing is in flight.
  ASSERT_TRUE(loop->run().ok());
  EXPECT_EQ(ran, 1);
  EXPECT_EQ(loop->pending(), 0U);
}

TEST(EventLoop, RunReturnsAfterStopWithoutSpinning) {
  auto loop = make_loop();
  ASSERT_TRUE(loop);
  Pipe p;  // never written: this poll stays pending
  bool polled = false;
  loop->poll(p.r.get(), POLLIN, [&](int) { polled = true; });
  loop->after(150ms, [&] { loop->stop(); });
  double cpu0 = cpu_seconds();
  auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(loop->run().ok());
  auto wall = std::chrono::steady_clock::now() - t0;
  double cpu = cpu_seconds() - cpu0;
  EXPECT_GE(wall, 150ms);
  EXPECT_LT(cpu, 0.05) << "run() burned CPU while idle";
  EXPECT_FALSE(polled);
  EXPECT_EQ(loop->pending(), 1U);
  // run() can be entered again after a stop.
  loop->after(10ms, [&] { loop->stop(); });
  ASSERT_TRUE(loop->run().ok());
}

std::atomic<int> g_signals{0};
void count_signal(int) { g_signals.fetch_add(1); }

// A signal handler without SA_RESTART makes io_uring_enter fail with EINTR; run() must carry on.
TEST(EventLoop, SignalsDoNotBreakRun) {
  auto loop = make_loop();
  ASSERT_TRUE(loop);
  struct sigaction sa {};
  struct sigaction old {};
  sa.sa_handler = count_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;
  ASSERT_EQ(::sigaction(SIGUSR1, &sa, &old), 0);
  bool fired = false;
  loop->after(150ms, [&] {
    fired = true;
    loop->stop();
  });
  std::atomic<bool> done{false};
  pthread_t target = ::pthread_self();
  std::thread pest([&] {
    while (!done.load()) {
      ::pthread_kill(target, SIGUSR1);
      std::this_thread::sleep_for(5ms);  // pacing only; the test waits on the loop's own timer
    }
  });
  auto r = loop->run();
  done = true;
  pest.join();
  ::sigaction(SIGUSR1, &old, nullptr);
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_TRUE(fired);
  EXPECT_GT(g_signals.load(), 0);
}

TEST(EventLoop, ThrowingCallbackDoesNotKillTheLoop) {
  auto loop = make_loop();
  ASSERT_TRUE(loop);
  bool second = false;
  loop->after(0ms, [] { throw std::runtime_error("boom"); });
  loop->after(10ms, [&] { second = true; });
  ASSERT_TRUE(run_until(*loop, [&] { return second; }));
}

TEST(EventLoop, ManyOpsBeyondTheSubmissionQueue) {
  auto loop = make_loop();  // 64 SQ entries
  ASSERT_TRUE(loop);
  int fired = 0;
  for (int i = 0; i < 500; ++i) loop->after(1ms, [&] { ++fired; });
  ASSERT_TRUE(run_until(*loop, [&] { return fired == 500; }));
  EXPECT_EQ(loop->pending(), 0U);
}

// A futex word in memory shared with another process, as a channel's doorbell is.
struct SharedWord {
  uint32_t* word = static_cast<uint32_t*>(
      ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0));
  ~SharedWord() { ::munmap(word, 4096); }
};

// Whether a thread of this process is blocked in futex_waitv(2) now (/proc/self/task/*/syscall
// gives the call a sleeping thread is in), asked again for up to 10 s.
bool a_thread_sleeps_in_futex_waitv() {
  for (int i = 0; i < 10000; ++i) {
    for (const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
      std::ifstream in(task.path() / "syscall");
      long nr = -1;
      if (in >> nr && nr == SYS_futex_waitv) return true;
    }
    std::this_thread::sleep_for(1ms);
  }
  return false;
}

// The loop's futex waits both ways: io_uring's op (Linux 6.7+) and the futex_waitv threads that
// stand in for it on older kernels.
class FutexWait : public ::testing::TestWithParam<FutexWaits> {
 protected:
  // A loop that waits the way asked, or null where this kernel cannot.
  std::unique_ptr<EventLoop> make_futex_loop() {
    auto loop = EventLoop::create(64, GetParam());
    if (!loop.ok() || loop.value()->futex_waits() != GetParam()) return nullptr;
    return std::move(loop.value());
  }
};

TEST_P(FutexWait, EndsWhenAnotherProcessWakesTheWord) {
  auto loop = make_futex_loop();
  if (!loop) GTEST_SKIP() << "this kernel cannot wait this way";
  SharedWord shared;
  ASSERT_NE(shared.word, MAP_FAILED);
  *shared.word = 1;
  int result = 1;
  int calls = 0;
  ASSERT_NE(loop->futex_wait(shared.word, 1, [&](int res) { result = res, ++calls; }), 0u);
  ASSERT_TRUE(loop->run_once(false).ok());
  EXPECT_EQ(calls, 0) << "ended before anyone woke the word";
  // The waker: another process, which changes the word and wakes it once the wait is queued.
  Pipe go;
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    char c;
    while (::read(go.r.get(), &c, 1) != 1) {
    }
    __atomic_store_n(shared.word, 2, __ATOMIC_SEQ_CST);
    ::syscall(SYS_futex, shared.word, FUTEX_WAKE, 1, nullptr, nullptr, 0);
    ::_exit(0);
  }
  ASSERT_EQ(::fcntl(go.r.get(), F_SETFL, 0), 0);  // the child's read blocks
  // A waiter thread must be asleep on the word before it changes, as the ring's wait is once
  // submitted: otherwise its wait ends -EAGAIN, as a wait on a changed word should.
  if (GetParam() == FutexWaits::threads) {
    ASSERT_TRUE(a_thread_sleeps_in_futex_waitv());
  }
  go.put();
  ASSERT_TRUE(run_until(*loop, [&] { return calls > 0; }));
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_EQ(result, 0);
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(loop->pending(), 0U);
}

TEST_P(FutexWait, OnAWordThatChangedEndsAtOnce) {
  auto loop = make_futex_loop();
  if (!loop) GTEST_SKIP() << "this kernel cannot wait this way";
  SharedWord shared;
  *shared.word = 2;
  int result = 1;
  ASSERT_NE(loop->futex_wait(shared.word, 1, [&](int res) { result = res; }), 0u);
  ASSERT_TRUE(run_until(*loop, [&] { return result != 1; }));
  EXPECT_EQ(result, -EAGAIN);
}

TEST_P(FutexWait, ACancelledWaitNeverRunsAndLetsTheLoopEnd) {
  auto loop = make_futex_loop();
  if (!loop) GTEST_SKIP() << "this kernel cannot wait this way";
  SharedWord shared;
  *shared.word = 1;
  bool ran = false;
  const auto id = loop->futex_wait(shared.word, 1, [&](int) { ran = true; });
  ASSERT_NE(id, 0u);
  ASSERT_TRUE(loop->run_once(false).ok());
  loop->cancel(id);
  // run() returns only once the cancelled wait's last completion has come in.
  ASSERT_TRUE(loop->run().ok());
  EXPECT_FALSE(ran);
  EXPECT_EQ(loop->pending(), 0U);
}

// More words than one futex_waitv call takes (128): the waits spread over several threads, each
// ends once, a cancelled one never, and ending them in any order loses none.
TEST_P(FutexWait, ManyWordsEachEndOnceAndCancelledOnesNever) {
  auto loop = make_futex_loop();
  if (!loop) GTEST_SKIP() << "this kernel cannot wait this way";
  constexpr int kWords = 300;
  auto* words = static_cast<uint32_t*>(
      ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(words, MAP_FAILED);
  std::vector<int> ended(kWords, 0);
  std::vector<EventLoop::OpId> ids(kWords);
  for (int i = 0; i < kWords; ++i) {
    words[i] = 1;
    ids[i] = loop->futex_wait(&words[i], 1, [&ended, i](int res) { ended[i] += res == 0 || res == -EAGAIN ? 1 : 100; });
    ASSERT_NE(ids[i], 0u);
  }
  ASSERT_TRUE(loop->run_once(false).ok());
  for (int i = 0; i < kWords; i += 3) loop->cancel(ids[i]);
  // Woken from the last to the first, as a peer would ring them: changed, then woken.
  for (int i = kWords; i-- > 0;) {
    __atomic_store_n(&words[i], 2, __ATOMIC_SEQ_CST);
    ::syscall(SYS_futex, &words[i], FUTEX_WAKE, 1, nullptr, nullptr, 0);
  }
  int expected = 0;
  for (int i = 0; i < kWords; ++i) expected += i % 3 != 0;
  ASSERT_TRUE(run_until(*loop, [&] {
    int n = 0;
    for (int e : ended) n += e;
    return n >= expected;
  }));
  for (int i = 0; i < kWords; ++i) EXPECT_EQ(ended[i], i % 3 == 0 ? 0 : 1) << i;
  ASSERT_TRUE(loop->run().ok());  // nothing left in flight: it returns
  EXPECT_EQ(loop->pending(), 0U);
  ::munmap(words, 4096);
}

INSTANTIATE_TEST_SUITE_P(Ways, FutexWait, ::testing::Values(FutexWaits::best, FutexWaits::threads),
                         [](const ::testing::TestParamInfo<FutexWaits>& p) {
                           return p.param == FutexWaits::best ? "IoUring" : "Threads";
                         });

TEST(EventLoop, FutexWaitCanBeTurnedOff) {
  auto loop = EventLoop::create(64, FutexWaits::none);
  ASSERT_TRUE(loop.ok());
  SharedWord shared;
  EXPECT_FALSE(loop.value()->supports_futex_wait());
  EXPECT_EQ(loop.value()->futex_wait(shared.word, 0, [](int) {}), 0u);
  EXPECT_EQ(loop.value()->pending(), 0U);
}

}  // namespace
}  // namespace plume::kernel
