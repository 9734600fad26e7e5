#include "channel_futex.h"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <ctime>

namespace plume::fwp {

int futex_wait_shared(uint32_t* word, uint32_t expected, std::chrono::nanoseconds timeout) {
  if (timeout.count() <= 0) return ETIMEDOUT;
  timespec ts{};
  ts.tv_sec = static_cast<time_t>(timeout.count() / 1'000'000'000);
  ts.tv_nsec = static_cast<long>(timeout.count() % 1'000'000'000);
  // FUTEX_WAIT's timeout is relative (CLOCK_MONOTONIC).
  if (::syscall(SYS_futex, word, FUTEX_WAIT, expected, &ts, nullptr, 0) == 0) return 0;
  return errno == ETIMEDOUT ? ETIMEDOUT : 0;
}

void futex_wake_shared(uint32_t* word) {
  ::syscall(SYS_futex, word, FUTEX_WAKE, 1, nullptr, nullptr, 0);
}

}  // namespace plume::fwp
