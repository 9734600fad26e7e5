// Pre-faulting a parked instance. A fork copies no page-table entries for file-backed text and
// read-only data, the vDSO's data page, or a mapping the child made itself (its channel); each is
// then a page fault on first touch, 12-27 µs apiece in a paravirtualised guest. A pool instance
// takes those faults before it parks, so that the start that wakes it takes none.
#pragma once

namespace plume::libplume {

// Populates the page tables of every read-only or executable file mapping and every shared
// mapping (MADV_POPULATE_READ / _WRITE), touches the vDSO clock and the next 32 KiB of stack.
// Best effort: errors are ignored (an older kernel only makes the first start slower).
void prefault_for_parking();

}  // namespace plume::libplume
