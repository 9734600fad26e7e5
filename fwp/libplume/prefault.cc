// See prefault.h.
#include "prefault.h"

#include <link.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif
#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25
#endif
#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
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
  // And reads it: in a guest on shadow page tables (no EPT, e.g. a PVM guest) a page present in
  // the process's own page table still costs a hypervisor exit at its first touch in each
  // process (~10 µs here, invisible to the guest's fault counters). A fork has no shadow entries
  // yet; without this read the handler's first instruction paid for it after the doorbell.
  (void)*reinterpret_cast<volatile const unsigned char*>(handler);
}

namespace {

constexpr uintptr_t kHugePage = uintptr_t{2} << 20;
constexpr uintptr_t kHugeSegmentMin = uintptr_t{256} << 10;

// See share_text_with_children: [start, end) (page-aligned, start on a 2 MiB boundary) moves to
// anonymous memory on transparent huge pages, same address and protection, same bytes. False,
// and nothing changed, where it cannot: another mapping within its last 2 MiB, no huge page to
// be had (MADV_COLLAPSE, Linux 6.1+, says so synchronously), or a refused call.
bool move_to_huge_pages(uintptr_t start, uintptr_t end, int prot) {
  const uintptr_t window_end = (end + kHugePage - 1) & ~(kHugePage - 1);
  const size_t len = window_end - start;
  auto* const at = reinterpret_cast<void*>(start);
  // The rest of the last 2 MiB must be free: reserve it (fails if anything is mapped there).
  void* tail = nullptr;
  if (end < window_end) {
    tail = ::mmap(reinterpret_cast<void*>(end), window_end - end, PROT_NONE,
                  MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    if (tail == MAP_FAILED) return false;
    if (tail != reinterpret_cast<void*>(end)) {  // a kernel without MAP_FIXED_NOREPLACE: a hint
      (void)::munmap(tail, window_end - end);
      return false;
    }
  }
  auto undo_tail = [&] {
    if (tail != nullptr) (void)::munmap(tail, window_end - end);
  };
  // A 2 MiB-aligned scratch area of the same length, filled, collapsed, then moved over.
  void* const raw = ::mmap(nullptr, len + kHugePage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) {
    undo_tail();
    return false;
  }
  const uintptr_t raw_at = reinterpret_cast<uintptr_t>(raw);
  const uintptr_t aligned = (raw_at + kHugePage - 1) & ~(kHugePage - 1);
  if (aligned > raw_at) (void)::munmap(raw, aligned - raw_at);
  (void)::munmap(reinterpret_cast<void*>(aligned + len), raw_at + kHugePage - aligned);  // never 0
  auto* const scratch = reinterpret_cast<void*>(aligned);
  (void)::madvise(scratch, len, MADV_HUGEPAGE);
  std::memcpy(scratch, at, end - start);
  if (::madvise(scratch, len, MADV_COLLAPSE) != 0 || ::mprotect(scratch, len, prot) != 0 ||
      ::mremap(scratch, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, at) == MAP_FAILED) {
    (void)::munmap(scratch, len);
    undo_tail();
    return false;
  }
  return true;
}

struct ShareWhat {
  uintptr_t vdso = 0;
  bool huge_pages = false;
  int moved = 0;  // segments now on huge pages
};

// See share_text_with_children: every read-only PT_LOAD segment of every loaded object but the
// vDSO (the kernel's special mapping, not ours to write to).
int share_segment(dl_phdr_info* info, size_t, void* data) {
  auto& what = *static_cast<ShareWhat*>(data);
  const auto page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const auto vdso_page = what.vdso & ~(page - 1);
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    if (ph.p_type == PT_LOAD && vdso_page != 0 &&
        ((info->dlpi_addr + ph.p_vaddr) & ~(page - 1)) == vdso_page)
      return 0;
  }
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    if (ph.p_type != PT_LOAD || (ph.p_flags & PF_W) || ph.p_memsz == 0) continue;
    const uintptr_t start = (info->dlpi_addr + ph.p_vaddr) & ~(page - 1);
    const uintptr_t end = (info->dlpi_addr + ph.p_vaddr + ph.p_memsz + page - 1) & ~(page - 1);
    void* at = reinterpret_cast<void*>(start);
    const int prot = PROT_READ | ((ph.p_flags & PF_X) ? PROT_EXEC : 0);
    // A small segment (the ELF header, a short rodata) costs fork() little to copy entry by
    // entry; a 2 MiB page for it would hold mostly zeros.
    if (what.huge_pages && start % kHugePage == 0 && end - start >= kHugeSegmentMin &&
        move_to_huge_pages(start, end, prot)) {
      ++what.moved;
      continue;
    }
    (void)::madvise(at, end - start, MADV_POPULATE_READ);
    // The whole segment at once: a one-page mprotect would split the mapping, and the page
    // that got the anon_vma would stay a mapping of its own.
    if (::mprotect(at, end - start, prot | PROT_WRITE) != 0) continue;
    auto* first = reinterpret_cast<volatile unsigned char*>(start);
    *first = *first;
    (void)::mprotect(at, end - start, prot);
  }
  return 0;
}

}  // namespace

int share_text_with_children(bool huge_pages) {
  ShareWhat what{static_cast<uintptr_t>(::getauxval(AT_SYSINFO_EHDR)), huge_pages, 0};
  (void)dl_iterate_phdr(share_segment, &what);
  return what.moved;
}

}  // namespace plume::libplume
