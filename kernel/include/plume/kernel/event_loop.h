// EventLoop: the supervisor's one io_uring loop. Everything in the control core — the control
// socket, signals (signalfd), worker exits (pidfds), log pipes, timers — is a one-shot operation
// submitted here with a callback. Single-threaded: callbacks run on the thread that calls run()
// (FutexWaits::threads adds threads that only wait on futex words and never run a callback).
#pragma once

#include <liburing.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <unordered_map>

#include "plume/base/sys_error.h"

namespace plume::kernel {

class FutexWaiter;

// How EventLoop::futex_wait() waits: an io_uring op (Linux 6.7+), threads in futex_waitv (Linux
// 5.16+; kernel/src/futex_waiter.h), or not at all.
enum class FutexWaits : uint8_t {
  none,      // futex_wait() unused: the caller sweeps (tests of the oldest kernels)
  threads,   // futex_waitv threads even where io_uring has the op (tests of 5.16–6.6 kernels)
  best,      // io_uring where the kernel has the op, else threads, else none
};

class EventLoop {
 public:
  using OpId = uint64_t;  // 0 is never a valid id
  // Receives the poll's revents (>0) or -errno (e.g. -ECANCELED after cancel()).
  using PollCallback = std::function<void(int result)>;
  using TimerCallback = std::function<void()>;

  static SysResult<std::unique_ptr<EventLoop>> create(unsigned entries = 256, FutexWaits futex_waits = FutexWaits::best);
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  // One-shot poll of fd for `events` (POLLIN, POLLOUT, ...). Re-arm from the callback if needed.
  OpId poll(int fd, unsigned events, PollCallback cb);
  // Runs cb once, `after` from now (io_uring timeout; no timerfd needed).
  OpId after(std::chrono::milliseconds after, TimerCallback cb);
  // Waits until the shared (cross-process) futex word at `word` no longer holds `expected` and
  // a futex wake comes (IORING_OP_FUTEX_WAIT, or a futex_waitv thread: futex_waits()); cb gets
  // 0, or -EAGAIN when the word had changed already. The word must stay mapped until the
  // callback ran or cancel() was called. Returns 0 where there is no way to wait
  // (supports_futex_wait()), or the SQ is full.
  OpId futex_wait(uint32_t* word, uint32_t expected, PollCallback cb);
  bool supports_futex_wait() const { return futex_waits_ != FutexWaits::none; }
  // How futex_wait() waits here: none, threads, or best (= io_uring).
  FutexWaits futex_waits() const { return futex_waits_; }
  // Cancels a pending op (poll, timer or futex wait). Its callback will not run. Unknown ids are
  // ignored.
  void cancel(OpId id);

  // Runs until stop() is called from a callback, or until no op is left in flight (nothing could
  // ever wake it). Returns an error only if the ring itself fails.
  SysResult<void> run();
  void stop() { stopping_ = true; }
  // Runs callbacks that are ready now without blocking (tests).
  SysResult<void> run_once(bool block);

  size_t pending() const { return ops_.size(); }

 private:
  struct Op;
  EventLoop() = default;
  io_uring_sqe* get_sqe();

  void poll_futex_waiter();  // polls the waiter's eventfd (while any of its waits is pending)
  void on_futex_waits_ended();
  // Runs an op's callback with its result (a timer's only if it expired), logging what it throws.
  void deliver(OpId id, Op& op, int result);

  io_uring ring_{};
  bool ring_ready_ = false;
  FutexWaits futex_waits_ = FutexWaits::none;
  std::unique_ptr<FutexWaiter> futex_waiter_;  // with FutexWaits::threads
  OpId futex_waiter_poll_ = 0;
  size_t threaded_waits_ = 0;  // futex waits with futex_waiter_ now
  bool stopping_ = false;
  OpId next_id_ = 1;
  std::unordered_map<OpId, std::unique_ptr<Op>> ops_;
  // Cancelled ops whose final CQE has not arrived yet: kept so the kernel never sees freed memory
  // (a timer's timespec) and so their late CQE is recognised and dropped.
  std::unordered_map<OpId, std::unique_ptr<Op>> cancelled_;
};

}  // namespace plume::kernel
