// FutexWaiter: futex waits for the event loop on kernels without IORING_OP_FUTEX_WAIT (before
// 6.7; Debian 12 ships 6.1), from threads blocked in futex_waitv(2) (Linux 5.16+), so that plumed
// still waits on instances' channel doorbells and space bells instead of sweeping them.
//
// Each thread waits on up to 127 words at once (futex_waitv's 128, less its control word, which
// add() and remove() ring to have it take the new set). A wait that ends is reported once through
// notify_fd(), an eventfd the loop polls, and take_done(). The threads read a word only while it
// is registered, under the lock remove() takes: once remove() returns, the caller may unmap it.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <utility>
#include <vector>

#include "plume/base/sys_error.h"
#include "plume/base/unique_fd.h"

namespace plume::kernel {

class FutexWaiter {
 public:
  static constexpr size_t kWordsPerThread = 127;
  // Fails with ENOSYS where the kernel has no futex_waitv.
  static SysResult<std::unique_ptr<FutexWaiter>> create();
  ~FutexWaiter();  // stops and joins its threads
  FutexWaiter(const FutexWaiter&) = delete;
  FutexWaiter& operator=(const FutexWaiter&) = delete;

  // Readable (an eventfd) once a wait has ended; read it, then take_done().
  int notify_fd() const { return notify_.get(); }
  // Waits until the shared futex word at `word` is woken, or is found to hold another value than
  // `expected` (reported -EAGAIN, as IORING_OP_FUTEX_WAIT does). `id` names it, never 0.
  void add(uint64_t id, uint32_t* word, uint32_t expected);
  // Stops waiting for `id`; an end already reported for it may still come out of take_done().
  void remove(uint64_t id);
  // The waits that ended since the last call: (id, 0 or -errno).
  std::vector<std::pair<uint64_t, int>> take_done();

 private:
  struct Shard;
  FutexWaiter() = default;
  void serve(Shard& shard);
  void finish(Shard& shard, size_t at, int result);  // under mu_
  void ring(Shard& shard);                             // under mu_: the thread takes the new set

  UniqueFd notify_;
  mutable std::mutex mu_;
  bool stopping_ = false;
  std::vector<std::unique_ptr<Shard>> shards_;
  std::unordered_map<uint64_t, Shard*> shard_of_;
  std::vector<std::pair<uint64_t, int>> done_;
};

}  // namespace plume::kernel
