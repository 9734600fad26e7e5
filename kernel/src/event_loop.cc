// EventLoop on io_uring: every poll and timer is one one-shot SQE whose user_data is its OpId.
// A cancelled op stays in `cancelled_` until its last CQE arrives, so a completion that raced
// the cancel (even in the same CQE batch) is recognised and dropped, never delivered.
#include "plume/kernel/event_loop.h"

#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <exception>
#include <utility>
#include <variant>
#include <vector>

#include "futex_waiter.h"
#include "plume/base/log.h"

namespace plume::kernel {
namespace {

// user_data of the loop's own SQEs (cancel requests): their CQEs carry nothing to deliver.
constexpr uint64_t kInternalOp = 0;

// IORING_OP_FUTEX_WAIT (Linux 6.7) and the futex2 size flag, which Debian 12's headers lack.
constexpr uint8_t kOpFutexWait = 51;
constexpr uint32_t kFutex2SizeU32 = 0x02;
constexpr uint64_t kFutexBitsetMatchAny = 0xffffffffu;

}  // namespace

struct EventLoop::Op {
  std::variant<PollCallback, TimerCallback> cb;
  __kernel_timespec ts{};  // a timer's timespec; must stay put until the kernel has read it
  bool futex = false;      // a futex wait (its callback is a PollCallback)
  bool threaded = false;   // ... waited for by futex_waiter_, not by the ring (no CQE comes)
  bool is_timer() const { return cb.index() == 1; }
};

SysResult<std::unique_ptr<EventLoop>> EventLoop::create(unsigned entries, FutexWaits futex_waits) {
  std::unique_ptr<EventLoop> loop(new EventLoop());
  // COOP_TASKRUN: the loop is single-threaded, no need for IPIs to run completions early.
  io_uring_params params{};
  params.flags = IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN;
  int rc = io_uring_queue_init_params(entries, &loop->ring_, &params);
  if (rc == -EINVAL) {  // older kernels: plain ring
    params = io_uring_params{};
    rc = io_uring_queue_init_params(entries, &loop->ring_, &params);
  }
  if (rc < 0) {
    errno = -rc;
    return fail(sys_error("io_uring_queue_init", std::to_string(entries) + " entries"));
  }
  loop->ring_ready_ = true;
  if (futex_waits == FutexWaits::best) {
    if (io_uring_probe* probe = io_uring_get_probe_ring(&loop->ring_)) {
      if (io_uring_opcode_supported(probe, kOpFutexWait) != 0) loop->futex_waits_ = FutexWaits::best;
      io_uring_free_probe(probe);
    }
  }
  if (futex_waits != FutexWaits::none && loop->futex_waits_ == FutexWaits::none) {
    if (auto waiter = FutexWaiter::create(); waiter.ok()) {
      loop->futex_waiter_ = std::move(waiter.value());
      loop->futex_waits_ = FutexWaits::threads;
    }
  }
  return loop;
}

EventLoop::~EventLoop() {
  futex_waiter_.reset();  // its threads stop first: nothing writes to its eventfd after this
  // Tearing the ring down cancels everything in flight; no callback runs after this.
  if (ring_ready_) io_uring_queue_exit(&ring_);
}

io_uring_sqe* EventLoop::get_sqe() {
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  // SQ full: hand what is queued to the kernel to make room (a few tries for -EBUSY/-EINTR).
  for (int attempt = 0; sqe == nullptr && attempt < 8; ++attempt) {
    int rc = io_uring_submit(&ring_);
    if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
      log::error("event_loop.submit_failed", {{"errno", -rc}});
      break;
    }
    sqe = io_uring_get_sqe(&ring_);
  }
  if (sqe == nullptr) log::error("event_loop.sq_full", {{"pending", ops_.size()}});
  return sqe;
}

EventLoop::OpId EventLoop::poll(int fd, unsigned events, PollCallback cb) {
  io_uring_sqe* sqe = get_sqe();
  if (sqe == nullptr) return 0;
  OpId id = next_id_++;
  auto op = std::make_unique<Op>();
  op->cb.emplace<PollCallback>(std::move(cb));
  io_uring_prep_poll_add(sqe, fd, events);
  io_uring_sqe_set_data64(sqe, id);
  ops_.emplace(id, std::move(op));
  return id;
}

EventLoop::OpId EventLoop::after(std::chrono::milliseconds after, TimerCallback cb) {
  io_uring_sqe* sqe = get_sqe();
  if (sqe == nullptr) return 0;
  OpId id = next_id_++;
  auto op = std::make_unique<Op>();
  op->cb.emplace<TimerCallback>(std::move(cb));
  auto ms = after.count() < 0 ? 0 : after.count();
  op->ts.tv_sec = ms / 1000;
  op->ts.tv_nsec = (ms % 1000) * 1000000;
  io_uring_prep_timeout(sqe, &op->ts, 0, 0);
  io_uring_sqe_set_data64(sqe, id);
  ops_.emplace(id, std::move(op));
  return id;
}

EventLoop::OpId EventLoop::futex_wait(uint32_t* word, uint32_t expected, PollCallback cb) {
  if (futex_waits_ == FutexWaits::none) return 0;
  const bool threaded = futex_waits_ == FutexWaits::threads;
  io_uring_sqe* sqe = threaded ? nullptr : get_sqe();
  if (!threaded && sqe == nullptr) return 0;
  OpId id = next_id_++;
  auto op = std::make_unique<Op>();
  op->cb.emplace<PollCallback>(std::move(cb));
  op->futex = true;
  op->threaded = threaded;
  if (threaded) {
    ops_.emplace(id, std::move(op));
    futex_waiter_->add(id, word, expected);
    ++threaded_waits_;
    poll_futex_waiter();
    return id;
  }
  // io_uring_prep_futex_wait of later liburings: fd = futex2 flags (shared: no FUTEX2_PRIVATE,
  // the word is in a mapping two processes share), addr = the word, off = the value, addr3 = mask.
  io_uring_prep_rw(kOpFutexWait, sqe, static_cast<int>(kFutex2SizeU32), word, 0, expected);
  sqe->addr3 = kFutexBitsetMatchAny;
  io_uring_sqe_set_data64(sqe, id);
  ops_.emplace(id, std::move(op));
  return id;
}

void EventLoop::cancel(OpId id) {
  auto it = ops_.find(id);
  if (it == ops_.end()) return;  // unknown, already delivered, or already cancelled
  std::unique_ptr<Op> op = std::move(it->second);
  ops_.erase(it);
  if (op->threaded) {
    // No CQE to wait for: once removed, a late end of it is not in ops_ and is dropped.
    futex_waiter_->remove(id);
    --threaded_waits_;
    if (threaded_waits_ == 0 && futex_waiter_poll_) cancel(std::exchange(futex_waiter_poll_, 0));
    return;
  }
  io_uring_sqe* sqe = get_sqe();
  if (sqe != nullptr) {
    if (op->is_timer()) {
      io_uring_prep_timeout_remove(sqe, id, 0);
    } else if (op->futex) {
      io_uring_prep_cancel64(sqe, id, 0);
    } else {
      io_uring_prep_poll_remove(sqe, id);
    }
    io_uring_sqe_set_data64(sqe, kInternalOp);
  }
  // Even when no cancel SQE could be queued the op ends in one CQE (completion or ring exit);
  // parking it here guarantees that CQE is swallowed.
  cancelled_.emplace(id, std::move(op));
}

void EventLoop::poll_futex_waiter() {
  if (futex_waiter_poll_ == 0)
    futex_waiter_poll_ = poll(futex_waiter_->notify_fd(), POLLIN, [this](int) { on_futex_waits_ended(); });
}

void EventLoop::deliver(OpId id, Op& op, int result) {
  try {
    if (op.is_timer()) {
      // -ETIME is the normal expiry; -ECANCELED (ring teardown) is swallowed.
      if (result == -ECANCELED) return;
      if (auto& cb = std::get<TimerCallback>(op.cb)) cb();
    } else if (auto& cb = std::get<PollCallback>(op.cb)) {
      cb(result);
    }
  } catch (const std::exception& e) {
    log::error("event_loop.callback_threw", {{"op", id}, {"what", e.what()}});
  } catch (...) {
    log::error("event_loop.callback_threw", {{"op", id}, {"what", "unknown exception"}});
  }
}

void EventLoop::on_futex_waits_ended() {
  futex_waiter_poll_ = 0;
  uint64_t count = 0;
  (void)!::read(futex_waiter_->notify_fd(), &count, sizeof count);
  for (const auto& [id, result] : futex_waiter_->take_done()) {
    auto it = ops_.find(id);
    if (it == ops_.end()) continue;  // cancelled meanwhile
    std::unique_ptr<Op> op = std::move(it->second);
    ops_.erase(it);
    --threaded_waits_;
    deliver(id, *op, result);
  }
  // Callbacks re-arm their waits (and the poll with them); poll again for the others.
  if (threaded_waits_ > 0) poll_futex_waiter();
}

SysResult<void> EventLoop::run() {
  while (!stopping_) {
    // Nothing in flight: nothing can ever wake us (and stop() can only come from a callback).
    if (ops_.empty() && cancelled_.empty() && io_uring_sq_ready(&ring_) == 0) break;
    auto r = run_once(true);
    if (!r) return r;
  }
  stopping_ = false;
  return {};
}

SysResult<void> EventLoop::run_once(bool block) {
  int rc;
  bool idle = ops_.empty() && cancelled_.empty() && io_uring_sq_ready(&ring_) == 0;
  if (block && !idle) {
    rc = io_uring_submit_and_wait(&ring_, 1);
  } else {
    rc = io_uring_submit(&ring_);
  }
  // EINTR (a signal) and EBUSY/EAGAIN (CQ backlog): reap what is there, the caller loops.
  if (rc < 0 && rc != -EINTR && rc != -EBUSY && rc != -EAGAIN && rc != -ETIME) {
    errno = -rc;
    return fail(sys_error("io_uring_submit_and_wait", "event loop ring"));
  }

  // Copy the batch out first: callbacks may submit and cancel, which touches the ring and ops_.
  struct Done {
    OpId id;
    int res;
  };
  std::vector<Done> batch;
  io_uring_cqe* cqe = nullptr;
  unsigned head = 0;
  unsigned seen = 0;
  io_uring_for_each_cqe(&ring_, head, cqe) {
    batch.push_back(Done{io_uring_cqe_get_data64(cqe), cqe->res});
    ++seen;
  }
  io_uring_cq_advance(&ring_, seen);

  for (const Done& d : batch) {
    if (d.id == kInternalOp) continue;
    if (cancelled_.erase(d.id) != 0) continue;  // cancelled: never delivered
    auto it = ops_.find(d.id);
    if (it == ops_.end()) continue;
    // Take the op out before running it: its callback may re-arm, cancel or destroy anything.
    std::unique_ptr<Op> op = std::move(it->second);
    ops_.erase(it);
    deliver(d.id, *op, d.res);
  }
  return {};
}

}  // namespace plume::kernel
