// Pre-faulting, so that an instance's start takes no page fault (12-40 µs apiece in a
// paravirtualised guest). A fork copies no page-table entries for file-backed text and read-only
// data (unless share_text_with_children, below, ran in the template) nor for the vDSO; a pool
// instance takes the faults its start would take before it parks, so that the start that wakes
// it takes none.
//
// Only those: populating every text and read-only mapping (as this once did) cost about 0.5 ms
// of CPU per pool instance on a VM and made its exit slower by as much again (each mapped page is
// unmapped at exit), for no fault saved: a read fault on file-backed text maps the 64 KiB around
// it (fault-around), and the path from the doorbell through a small handler to exit then takes
// no fault at all (measured with getrusage's ru_minflt in bench/fwp's handler). Having fork()
// copy the template's entries instead (share_text_with_children) costs ~80 µs per fork and left
// churn (bench/fwp, fork and exit per cycle) unchanged.
#pragma once

#include <cstdint>

namespace plume::libplume {

// Touches the vDSO clock and the next 16 KiB of stack (a stack page is a ~40 µs fault on a VM),
// populates the text around `handler` (MADV_POPULATE_READ, which fault-around widens to 64 KiB),
// and reads the handler's first byte (on shadow page tables a present page still costs a
// hypervisor exit at its first touch in each process). Best effort: errors are ignored (an
// older kernel only makes the first start slower).
void prefault_for_parking(uintptr_t handler);

// Run once in the template, after init: makes every later fork() copy the page-table entries of
// the read-only segments (text, rodata) of every loaded object, so an instance finds its code
// mapped instead of taking a page fault per 64 KiB of code it runs between fork and handler (8
// of its 16 faults on bench/fwp's path). fork() skips the entries of a file-backed mapping that
// has no anonymous pages ("it can refault them"); each segment is populated, then made writable
// for one same-value store that gives it an anonymous page, and read-only again. Costs one page
// per segment in the template and ~80 µs more per fork() in a paravirtualised guest (more
// entries to copy); saves more in the child (bench/fwp: template-fork start ~7% faster).
// Best effort: a segment whose mprotect is refused (a seccomp profile, memory-deny-write-execute)
// is left as it was. PLUME_NO_SHARE_TEXT in the template's environment skips it (for A/B runs).
//
// With `huge_pages` (TemplateSpec::huge_text), a segment of 256 KiB or more that starts on a
// 2 MiB boundary (plume_add_app's HUGE_TEXT links with -z max-page-size=0x200000 for this) moves
// instead onto an anonymous transparent huge page: same address, bytes and protection, one page-middle-directory entry
// for fork() to copy rather than one entry per 4 KiB, and all of it mapped in the child. It
// costs the template a 2 MiB page per segment (shared with its instances, never written), and
// /proc/<pid>/maps then shows the segment as anonymous memory. Where the rest of its last 2 MiB
// is mapped, no huge page can be had (MADV_COLLAPSE fails, or the kernel predates it: Linux
// 6.1) or a call is refused, it gets the treatment above. Returns how many segments moved.
int share_text_with_children(bool huge_pages);

}  // namespace plume::libplume
