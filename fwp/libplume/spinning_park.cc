// A spinning standby's wait (spinning_park.h).
#include "spinning_park.h"

#include "runtime.h"

#include <sched.h>
#include <sys/resource.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>

namespace plume::libplume {
namespace {

using namespace std::chrono_literals;

// Kept off the CPU this long between two looks at the clock: another task wants this CPU.
constexpr std::chrono::nanoseconds kContendedGap = 1ms;
// Short at first (a burst of other work is often over in a few ms), doubling while it lasts: a
// re-poll on a contended CPU wastes up to a scheduler slice (~3 ms), so at most ~2% of a CPU.
constexpr std::chrono::milliseconds kFirstBackOff = 5ms;
constexpr std::chrono::milliseconds kLongestBackOff = 160ms;
// A poll this long without contention: the next contention is new, back off briefly again.
constexpr std::chrono::nanoseconds kContentionForgotten = 1s;

bool set_policy(int policy) {
  const sched_param zero{};
  return ::sched_setscheduler(0, policy, &zero) == 0;
}

}  // namespace

bool park_asleep(fwp::Channel& channel) {
  channel.set_spin(std::chrono::nanoseconds(0));
  for (;;) {
    auto waited = channel.wait_readable(std::chrono::hours(1));
    if (waited) return true;
    if (waited.error() == fwp::ChannelError::corrupt) return false;
  }
}

bool park_spinning(fwp::Channel& channel, bool trace) {
  channel.set_spin(std::chrono::nanoseconds(0));
  // Lowering its own policy is always allowed; only the image's filter may refuse it.
  if (!set_policy(SCHED_IDLE)) {
    if (trace) std::fprintf(stderr, "libplume: spinning standby cannot use SCHED_IDLE; parks asleep\n");
    return park_asleep(channel);
  }
  // Coming back is a rise in priority: with RLIMIT_NICE 20 it does so itself, otherwise the
  // supervisor (CAP_SYS_NICE) does, right after the doorbell.
  rlimit nice_limit{};
  const bool can_come_back = ::getrlimit(RLIMIT_NICE, &nice_limit) == 0 && nice_limit.rlim_cur >= 20;
  auto back_off = kFirstBackOff;
  for (;;) {
    uint64_t last = now_ns();
    const uint64_t spin_started = last;
    auto polled = channel.spin_until_readable([&] {
      const uint64_t now = now_ns();  // monotonic: never below `last`
      const bool contended = now - last > static_cast<uint64_t>(kContendedGap.count());
      last = now;
      return contended;
    });
    // Back to normal first where it can: the handler should not run at SCHED_IDLE.
    if (can_come_back) (void)set_policy(SCHED_OTHER);
    if (polled) return true;
    if (polled.error() == fwp::ChannelError::corrupt) return false;
    // Contended.
    if (last - spin_started > static_cast<uint64_t>(kContentionForgotten.count())) back_off = kFirstBackOff;
    if (trace) {
      std::fprintf(stderr, "libplume: spinning standby kept off its CPU; sleeps %lld ms\n",
                   static_cast<long long>(back_off.count()));
    }
    auto waited = channel.wait_readable(back_off);
    if (waited) return true;
    if (waited.error() == fwp::ChannelError::corrupt) return false;
    back_off = std::min<std::chrono::milliseconds>(back_off * 2, kLongestBackOff);
    if (can_come_back) (void)set_policy(SCHED_IDLE);
  }
}

}  // namespace plume::libplume
