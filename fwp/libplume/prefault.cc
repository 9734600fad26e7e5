// See prefault.h.
#include "prefault.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#define MADV_POPULATE_WRITE 23
#endif

namespace plume::libplume {
namespace {

__attribute__((noinline)) void touch_stack() {
  volatile char pad[32 * 1024];
  for (size_t i = 0; i < sizeof pad; i += 4096) pad[i] = 0;
}

void populate_line(const char* line) {
  // "start-end perms offset dev inode path"
  char* rest = nullptr;
  const uintptr_t start = std::strtoull(line, &rest, 16);
  if (rest == nullptr || *rest != '-') return;
  const uintptr_t end = std::strtoull(rest + 1, &rest, 16);
  if (rest == nullptr || *rest != ' ' || std::strlen(rest) < 5) return;
  const char* perms = rest + 1;
  const bool shared = perms[3] == 's';
  const bool writable = perms[1] == 'w';
  const bool readable = perms[0] == 'r';
  const bool special = std::strchr(line, '[') != nullptr;  // [vdso], [vvar], [stack], [heap]
  if (!readable || special || end <= start) return;
  void* addr = reinterpret_cast<void*>(start);
  if (shared) {
    (void)::madvise(addr, end - start, writable ? MADV_POPULATE_WRITE : MADV_POPULATE_READ);
  } else if (!writable && std::strchr(line, '/') != nullptr) {
    (void)::madvise(addr, end - start, MADV_POPULATE_READ);  // text and read-only data
  }
}

}  // namespace

void prefault_for_parking() {
  timespec ts{};
  (void)clock_gettime(CLOCK_MONOTONIC, &ts);  // vDSO text and data
  touch_stack();
  const int fd = ::open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  char buf[16384];
  size_t len = 0;
  for (;;) {
    const ssize_t n = ::read(fd, buf + len, sizeof buf - 1 - len);
    if (n <= 0) break;
    len += static_cast<size_t>(n);
    buf[len] = '\0';
    char* line = buf;
    for (char* nl; (nl = std::strchr(line, '\n')) != nullptr; line = nl + 1) {
      *nl = '\0';
      populate_line(line);
    }
    len = static_cast<size_t>(buf + len - line);  // keep the partial last line
    std::memmove(buf, line, len);
  }
  ::close(fd);
}

}  // namespace plume::libplume
