// slow_consumer: a libplume app that takes its time over each message, for fwp_push_bench: a
// client that sends faster than it reads fills its channel. Each message costs it `work <us>` of
// busy CPU (the start input sets it; 100 µs by default); "sync" is answered "sync" once
// everything before it has been worked through; an empty message ends it.
#include <plume/plume.h>
#include <time.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>

namespace {

uint64_t cpu_now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000u + static_cast<uint64_t>(ts.tv_nsec);
}

int handle(plume_instance* self) {
  uint64_t work_ns = 100000;
  char buf[1024];
  for (;;) {
    const long n = plume_recv(self, buf, sizeof buf - 1, -1);
    if (n == 0 || n == -EPIPE) return 0;
    if (n < 0) return 1;
    buf[n] = '\0';
    if (std::strncmp(buf, "work ", 5) == 0) {
      work_ns = std::strtoull(buf + 5, nullptr, 10) * 1000u;
      if (plume_send(self, buf, static_cast<size_t>(n)) != 0) return 1;
    } else if (std::strcmp(buf, "sync") == 0) {
      if (plume_send(self, buf, 4) != 0) return 1;
    } else {
      // CPU time, not wall time: a consumer preempted by the client still does the same work.
      for (const uint64_t until = cpu_now_ns() + work_ns; cpu_now_ns() < until;) {
      }
    }
  }
}

}  // namespace

PLUME_APP(nullptr, handle)
