// The shared-memory layout of a channel memfd and the checks applied to what is read from it.
//
//   offset 0            header (128 B): magic, version, geometry (cross-checked at attach only)
//   ring 0 (a → b)      producer index | consumer index | doorbell | space bell  (128 B each),
//                       then the slots
//   ring 1 (b → a)      the same
//   slot                u32 length, u32 reserved (0), payload (slot_size - 8 bytes)
//
// Control words sit 128 bytes apart: their own cache line, and x86's adjacent-line prefetcher
// (which pulls 128-byte pairs) cannot make the producer's and the consumer's lines bounce together.
#pragma once

#include <cstddef>
#include <cstdint>

#include "plume/fwp/channel.h"

namespace plume::fwp::channel_layout {

inline constexpr size_t kCacheLine = 64;
inline constexpr size_t kControlStride = 128;
inline constexpr size_t kHeaderBytes = 128;
inline constexpr size_t kControlBytes = 4 * kControlStride;
inline constexpr size_t kProducerOffset = 0;
inline constexpr size_t kConsumerOffset = kControlStride;
inline constexpr size_t kDoorbellOffset = 2 * kControlStride;
// The producer's futex word, for a producer that waits for a free slot: the mirror of the
// doorbell (only the producer sets it sleeping and clears it; the consumer only rings it 1 → 2).
inline constexpr size_t kSpaceOffset = 3 * kControlStride;
inline constexpr size_t kMaxMapping = size_t{1} << 30;  // 1 GiB: a bound, not a target

inline constexpr uint64_t kMagic = 0x3148434d554c50ULL;  // "PLUMCH1\0" read little-endian
inline constexpr uint32_t kVersion = 2;  // 2: the space bell

// Doorbell values. Only the consumer writes 0 and 1; the producer's only write is 1 → 2.
// The space bell takes the same values with the roles swapped.
inline constexpr uint32_t kAwake = 0;
inline constexpr uint32_t kSleeping = 1;
inline constexpr uint32_t kRung = 2;

struct Header {
  uint64_t magic;
  uint32_t version;
  uint32_t slots;
  uint32_t slot_size;
  uint32_t start_index;
};
static_assert(sizeof(Header) <= kHeaderBytes);

inline size_t ring_bytes(const ChannelGeometry& g) {
  return kControlBytes + size_t{g.slots} * g.slot_size;
}
inline size_t ring_offset(const ChannelGeometry& g, unsigned ring) {
  return kHeaderBytes + ring * ring_bytes(g);
}

// True when `next` is a legal new value of a peer's free-running index that was last seen at
// `seen` and can be at most `limit`: seen <= next <= limit, modulo 2^32. For the peer's producer
// index, limit = own consumer index + slots (it cannot publish into slots not yet freed); for the
// peer's consumer index, limit = own producer index (it cannot consume what was not published).
// Going backwards or beyond the limit is corruption.
inline bool index_advance_ok(uint32_t seen, uint32_t next, uint32_t limit) {
  return static_cast<uint32_t>(next - seen) <= static_cast<uint32_t>(limit - seen);
}

}  // namespace plume::fwp::channel_layout
