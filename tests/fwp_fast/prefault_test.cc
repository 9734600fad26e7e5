// share_text_with_children (libplume/prefault.h): after it, a fork copies the page-table entries
// of the read-only segments, so the child finds its text mapped before it touches it. Read from
// the child's own /proc/self/pagemap (bit 63: present), before and without the call.
#include <fcntl.h>
#include <link.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>

#include <gtest/gtest.h>

#include "prefault.h"

namespace plume::libplume {
namespace {

struct Range {
  uintptr_t start = 0;
  uintptr_t end = 0;
};

// The test binary's own (first loaded object's) executable segment.
Range main_text() {
  Range r;
  dl_iterate_phdr(
      [](dl_phdr_info* info, size_t, void* out) {
        for (int i = 0; i < info->dlpi_phnum; ++i) {
          const ElfW(Phdr)& ph = info->dlpi_phdr[i];
          if (ph.p_type != PT_LOAD || !(ph.p_flags & PF_X)) continue;
          auto* range = static_cast<Range*>(out);
          range->start = (info->dlpi_addr + ph.p_vaddr) & ~uintptr_t{4095};
          range->end = (info->dlpi_addr + ph.p_vaddr + ph.p_memsz + 4095) & ~uintptr_t{4095};
          return 1;  // the main program comes first
        }
        return 0;
      },
      &r);
  return r;
}

// Percent of `r`'s pages present in this process's page table. Reads pagemap in one call, so
// the reading itself maps only the few pages of this function and read().
int percent_present(Range r) {
  static uint64_t entries[1 << 16];
  const size_t pages = (r.end - r.start) / 4096;
  if (pages == 0 || pages > sizeof entries / sizeof entries[0]) return -1;
  const int fd = ::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  const auto want = static_cast<ssize_t>(pages * sizeof(uint64_t));
  const ssize_t n = ::pread(fd, entries, static_cast<size_t>(want), static_cast<off_t>(r.start / 4096 * 8));
  ::close(fd);
  if (n != want) return -1;
  size_t present = 0;
  for (size_t i = 0; i < pages; ++i) present += (entries[i] >> 63) & 1;
  return static_cast<int>(present * 100 / pages);
}

// In a child (the test process keeps its own mappings as they are): optionally share, then
// fork a grandchild that reports how much of the text it found mapped.
int present_in_grandchild(bool share) {
  const Range text = main_text();
  int p[2];
  if (::pipe(p) != 0) return -1;
  const pid_t child = ::fork();
  if (child == 0) {
    ::close(p[0]);
    if (share) share_text_with_children(false);
    const pid_t grandchild = ::fork();
    if (grandchild == 0) {
      const int pct = percent_present(text);
      _exit(::write(p[1], &pct, sizeof pct) == sizeof pct ? 0 : 1);
    }
    int st = 0;
    ::waitpid(grandchild, &st, 0);
    _exit(WIFEXITED(st) ? WEXITSTATUS(st) : 2);
  }
  ::close(p[1]);
  int pct = -1;
  if (::read(p[0], &pct, sizeof pct) != sizeof pct) pct = -1;
  ::close(p[0]);
  int st = 0;
  ::waitpid(child, &st, 0);
  return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? pct : -1;
}

TEST(ShareText, ForkedChildFindsItsTextMapped) {
  if (::access("/proc/self/pagemap", R_OK) != 0) GTEST_SKIP() << "no /proc/self/pagemap";
  ASSERT_GT(main_text().end, main_text().start);
  const int shared = present_in_grandchild(true);
  const int plain = present_in_grandchild(false);
  ASSERT_GE(shared, 0);
  ASSERT_GE(plain, 0);
  EXPECT_GE(shared, 99) << "text pages present after a fork, with share_text_with_children";
  // The control: a plain fork copies no entries for file-backed text, so the grandchild has
  // only what it touched itself (and fault-around brought in).
  EXPECT_LT(plain, 50) << "text pages present after a plain fork";
}

}  // namespace
}  // namespace plume::libplume
