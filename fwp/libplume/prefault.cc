// See prefault.h.
#include "prefault.h"

#include <link.h>
#include <sys/auxv.h>
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
  // And reads it: in a guest on shadow page tables (no EPT, e.g. a PVM guest) a page present in
  // the process's own page table still costs a hypervisor exit at its first touch in each
  // process (~10 µs here, invisible to the guest's fault counters). A fork has no shadow entries
  // yet; without this read the handler's first instruction paid for it after the doorbell.
  (void)*reinterpret_cast<volatile const unsigned char*>(handler);
}

namespace {

// See share_text_with_children: every read-only PT_LOAD segment of every loaded object but the
// vDSO (the kernel's special mapping, not ours to write to).
int share_segment(dl_phdr_info* info, size_t, void* vdso) {
  const auto page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const auto vdso_page = reinterpret_cast<uintptr_t>(vdso) & ~(page - 1);
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

void share_text_with_children() {
  void* vdso = reinterpret_cast<void*>(::getauxval(AT_SYSINFO_EHDR));
  (void)dl_iterate_phdr(share_segment, vdso);
}

}  // namespace plume::libplume
