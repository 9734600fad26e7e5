#include "futex_waiter.h"

#include <linux/futex.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <thread>

#include "plume/base/log.h"

namespace plume::kernel {
namespace {

constexpr uint32_t kSizeU32 = FUTEX_32;
constexpr uint32_t kPrivate = FUTEX_PRIVATE_FLAG;

long wait_on_words(struct futex_waitv* waiters, unsigned count) {
  return ::syscall(SYS_futex_waitv, waiters, count, 0, nullptr, CLOCK_MONOTONIC);
}

}  // namespace

struct FutexWaiter::Shard {
  struct Entry {
    uint64_t id;
    uint32_t* word;
    uint32_t expected;
  };
  std::vector<Entry> entries;
  uint32_t control = 0;  // bumped and woken (private futex) when `entries` changed
  std::thread thread;
};

SysResult<std::unique_ptr<FutexWaiter>> FutexWaiter::create() {
  // An empty vector is refused (EINVAL) by a kernel that has the call, ENOSYS by one that has not.
  if (wait_on_words(nullptr, 0) != -1 || errno == ENOSYS) {
    errno = ENOSYS;
    return fail(sys_error("futex_waitv", "Linux 5.16+"));
  }
  std::unique_ptr<FutexWaiter> waiter(new FutexWaiter());
  waiter->notify_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!waiter->notify_) return fail(sys_error("eventfd", "futex waiter"));
  return waiter;
}

FutexWaiter::~FutexWaiter() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    for (auto& shard : shards_) ring(*shard);
  }
  for (auto& shard : shards_) shard->thread.join();
}

void FutexWaiter::ring(Shard& shard) {
  std::atomic_ref<uint32_t>(shard.control).fetch_add(1, std::memory_order_seq_cst);
  ::syscall(SYS_futex, &shard.control, FUTEX_WAKE | FUTEX_PRIVATE_FLAG, 1, nullptr, nullptr, 0);
}

void FutexWaiter::add(uint64_t id, uint32_t* word, uint32_t expected) {
  std::lock_guard lock(mu_);
  Shard* room = nullptr;
  for (auto& shard : shards_)
    if (shard->entries.size() < kWordsPerThread) {
      room = shard.get();
      break;
    }
  if (room == nullptr) {
    shards_.push_back(std::make_unique<Shard>());
    room = shards_.back().get();
    room->thread = std::thread([this, room] { serve(*room); });
  }
  room->entries.push_back({id, word, expected});
  shard_of_[id] = room;
  ring(*room);
}

void FutexWaiter::remove(uint64_t id) {
  std::lock_guard lock(mu_);
  auto it = shard_of_.find(id);
  if (it == shard_of_.end()) return;
  Shard& shard = *it->second;
  shard_of_.erase(it);
  std::erase_if(shard.entries, [id](const Shard::Entry& e) { return e.id == id; });
  ring(shard);
}

std::vector<std::pair<uint64_t, int>> FutexWaiter::take_done() {
  std::lock_guard lock(mu_);
  return std::exchange(done_, {});
}

void FutexWaiter::finish(Shard& shard, size_t at, int result) {
  done_.emplace_back(shard.entries[at].id, result);
  shard_of_.erase(shard.entries[at].id);
  shard.entries.erase(shard.entries.begin() + static_cast<std::ptrdiff_t>(at));
  const uint64_t one = 1;
  (void)!::write(notify_.get(), &one, sizeof one);
}

void FutexWaiter::serve(Shard& shard) {
  std::vector<struct futex_waitv> waiters;
  std::vector<uint64_t> ids;  // the entry each waiter after the control word stands for
  for (;;) {
    {
      std::lock_guard lock(mu_);
      if (stopping_) return;
      waiters.clear();
      ids.clear();
      waiters.push_back({std::atomic_ref<uint32_t>(shard.control).load(), reinterpret_cast<uintptr_t>(&shard.control),
                         kSizeU32 | kPrivate, 0});
      for (const Shard::Entry& e : shard.entries) {
        // Shared: the word is in a mapping another process writes and wakes.
        waiters.push_back({e.expected, reinterpret_cast<uintptr_t>(e.word), kSizeU32, 0});
        ids.push_back(e.id);
      }
    }
    const long woken = wait_on_words(waiters.data(), static_cast<unsigned>(waiters.size()));
    const int err = woken < 0 ? errno : 0;
    std::lock_guard lock(mu_);
    if (stopping_) return;
    if (woken > 0) {
      // That word was woken: its wait ends, unless it was removed meanwhile.
      const uint64_t id = ids[static_cast<size_t>(woken - 1)];
      for (size_t i = 0; i < shard.entries.size(); ++i)
        if (shard.entries[i].id == id) {
          finish(shard, i, 0);
          break;
        }
    } else if (woken < 0 && err == EAGAIN) {
      // Some word (or the control word) held another value already: those waits end so.
      for (size_t i = shard.entries.size(); i-- > 0;)
        if (std::atomic_ref<uint32_t>(*shard.entries[i].word).load() != shard.entries[i].expected)
          finish(shard, i, -EAGAIN);
    } else if (woken < 0 && err != EINTR) {
      // EFAULT, ENOMEM: nothing here can wait; every wait ends with the error, none hangs.
      log::error("futex_waiter.failed", {{"errno", err}, {"words", shard.entries.size()}});
      while (!shard.entries.empty()) finish(shard, shard.entries.size() - 1, -err);
    }
  }
}

}  // namespace plume::kernel
