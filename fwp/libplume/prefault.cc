// See prefault.h.
#include "prefault.h"

#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif

namespace plume::libplume {
namespace {

__attribute__((noinline)) void touch_stack() {
  volatile char pad[16 * 1024];
  for (size_t i = 0; i < sizeof pad; i += 4096) pad[i] = 0;
}

}  // namespace

void prefault_for_parking(uintptr_t handler) {
  timespec ts{};
  (void)clock_gettime(CLOCK_MONOTONIC, &ts);  // vDSO text and data
  touch_stack();
  const auto page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const uintptr_t at = handler & ~(page - 1);
  (void)::madvise(reinterpret_cast<void*>(at), page, MADV_POPULATE_READ);
}

}  // namespace plume::libplume
