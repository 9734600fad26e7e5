// EventLoop: the supervisor's one io_uring loop. Everything in the control core — the control
// socket, signals (signalfd), worker exits (pidfds), log pipes, timers — is a one-shot operation
// submitted here with a callback. Single-threaded: callbacks run on the thread that calls run().
#pragma once

#include <liburing.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <unordered_map>

#include "plume/base/sys_error.h"

namespace plume::kernel {

class EventLoop {
 public:
  using OpId = uint64_t;  // 0 is never a valid id
  // Receives the poll's revents (>0) or -errno (e.g. -ECANCELED after cancel()).
  using PollCallback = std::function<void(int result)>;
  using TimerCallback = std::function<void()>;

  // `futex_wait`: false leaves futex_wait() unused even where the kernel has it (tests of what
  // plumed does on older kernels).
  static SysResult<std::unique_ptr<EventLoop>> create(unsigned entries = 256, bool futex_wait = true);
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  // One-shot poll of fd for `events` (POLLIN, POLLOUT, ...). Re-arm from the callback if needed.
  OpId poll(int fd, unsigned events, PollCallback cb);
  // Runs cb once, `after` from now (io_uring timeout; no timerfd needed).
  OpId after(std::chrono::milliseconds after, TimerCallback cb);
  // Waits until the shared (cross-process) futex word at `word` no longer holds `expected` and
  // a futex wake comes (IORING_OP_FUTEX_WAIT, Linux 6.7+); cb gets 0, or -EAGAIN when the word
  // had changed already. The word must stay mapped until the callback ran or cancel() was called.
  // Returns 0 where the kernel lacks the operation (supports_futex_wait()), or the SQ is full.
  OpId futex_wait(uint32_t* word, uint32_t expected, PollCallback cb);
  bool supports_futex_wait() const { return futex_wait_supported_; }
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

  io_uring ring_{};
  bool ring_ready_ = false;
  bool futex_wait_supported_ = false;
  bool stopping_ = false;
  OpId next_id_ = 1;
  std::unordered_map<OpId, std::unique_ptr<Op>> ops_;
  // Cancelled ops whose final CQE has not arrived yet: kept so the kernel never sees freed memory
  // (a timer's timespec) and so their late CQE is recognised and dropped.
  std::unordered_map<OpId, std::unique_ptr<Op>> cancelled_;
};

}  // namespace plume::kernel
