// Pre-faulting a parked instance. A fork copies no page-table entries for file-backed text and
// read-only data or the vDSO's data page; each is then a page fault on first touch, 12-27 µs
// apiece in a paravirtualised guest. A pool instance takes the ones its start would take before
// it parks, so that the start that wakes it takes none.
//
// Only those: populating every text and read-only mapping (as this once did) cost about 0.5 ms
// of CPU per pool instance on a VM and made its exit slower by as much again (each mapped page is
// unmapped at exit), for no fault saved: a read fault on file-backed text maps the 64 KiB around
// it (fault-around), and the path from the doorbell through a small handler to exit then takes
// no fault at all (measured with getrusage's ru_minflt in bench/fwp's handler).
#pragma once

#include <cstdint>

namespace plume::libplume {

// Touches the vDSO clock and the next 16 KiB of stack (a stack page is a ~40 µs fault on a VM),
// and populates the text around `handler` (MADV_POPULATE_READ, which fault-around widens to
// 64 KiB). Best effort: errors are ignored (an older kernel only makes the first start slower).
void prefault_for_parking(uintptr_t handler);

}  // namespace plume::libplume
