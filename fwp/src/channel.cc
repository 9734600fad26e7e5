// Channel endpoints: setup (memfd, seals, mapping) and the SPSC data path with its wake-up
// protocol. Every value read from the mapping is loaded once, checked, then used (no double fetch).
#include "plume/fwp/channel.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <utility>

#include "channel_futex.h"
#include "channel_layout.h"

namespace plume::fwp {

namespace L = channel_layout;
using Clock = std::chrono::steady_clock;

namespace {

constexpr unsigned kSeals = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL;
const size_t kPageSize = static_cast<size_t>(::sysconf(_SC_PAGESIZE));

std::atomic_ref<uint32_t> word(uint32_t* p) { return std::atomic_ref<uint32_t>(*p); }

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

std::string geometry_text(const ChannelGeometry& g) {
  return "slots=" + std::to_string(g.slots) + " slot_size=" + std::to_string(g.slot_size);
}

}  // namespace

const char* channel_error_name(ChannelError e) {
  switch (e) {
    case ChannelError::full: return "full";
    case ChannelError::empty: return "empty";
    case ChannelError::too_big: return "too_big";
    case ChannelError::buffer_too_small: return "buffer_too_small";
    case ChannelError::timeout: return "timeout";
    case ChannelError::corrupt: return "corrupt";
  }
  return "unknown";
}

size_t ChannelGeometry::mapping_size() const {
  // kPageSize, not sysconf here: an instance sizes its channel between fork() and its handler,
  // and glibc's sysconf frame alone reaches a stack page that path would otherwise never touch
  // (one more page fault per forked instance).
  const size_t raw = L::kHeaderBytes + 2 * L::ring_bytes(*this);
  return (raw + kPageSize - 1) / kPageSize * kPageSize;
}

const char* ChannelGeometry::check() const {
  if (slots < 2 || slots > 65536 || (slots & (slots - 1)) != 0)
    return "slots must be a power of two in [2, 65536]";
  if (slot_size < 64 || slot_size > 65536 || slot_size % L::kCacheLine != 0)
    return "slot_size must be a multiple of 64 in [64, 65536]";
  if (L::kHeaderBytes + 2 * L::ring_bytes(*this) > L::kMaxMapping)
    return "slots * slot_size is over the 1 GiB bound";
  return "";
}

// ---- setup ---------------------------------------------------------------------------------

SysResult<Channel::Created> Channel::create(const ChannelGeometry& geometry) {
  if (const char* bad = geometry.check(); *bad != '\0')
    return fail(plain_error("channel create", std::string(bad) + " (" + geometry_text(geometry) + ")"));
  UniqueFd fd(::memfd_create("plume-channel", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (!fd) return fail(sys_error("memfd_create", "plume-channel"));
  const size_t size = geometry.mapping_size();
  if (::ftruncate(fd.get(), static_cast<off_t>(size)) != 0)
    return fail(sys_error("ftruncate", "plume-channel memfd to " + std::to_string(size)));
  // Sealed before the peer can see it: the peer can never shrink the file under the supervisor's
  // mapping (a SIGBUS in the supervisor), grow it, or change the seals.
  if (::fcntl(fd.get(), F_ADD_SEALS, kSeals) != 0)
    return fail(sys_error("fcntl F_ADD_SEALS", "plume-channel memfd"));
  auto ch = map(fd.get(), geometry, ChannelSide::a);
  if (!ch) return fail(ch.error());
  // The memfd is zero-filled: doorbells start awake (0). The header is for the attach check only.
  auto* h = reinterpret_cast<L::Header*>(ch->base_);
  h->magic = L::kMagic;
  h->version = L::kVersion;
  h->slots = geometry.slots;
  h->slot_size = geometry.slot_size;
  h->start_index = geometry.start_index;
  for (RingView* r : {&ch->tx_, &ch->rx_}) {
    word(r->producer).store(geometry.start_index, std::memory_order_relaxed);
    word(r->consumer).store(geometry.start_index, std::memory_order_relaxed);
  }
  // Handing the fd over (fork, sendmsg) orders these stores before anything the peer does.
  return Created{std::move(fd), std::move(*ch)};
}

SysResult<Channel> Channel::attach(int memfd, const ChannelGeometry& geometry, ChannelSide side,
                                  Attach how) {
  if (const char* bad = geometry.check(); *bad != '\0')
    return fail(plain_error("channel attach", std::string(bad) + " (" + geometry_text(geometry) + ")"));
  if (how == Attach::checked) {
    if (auto ok = check_memfd(memfd, geometry); !ok) return fail(ok.error());
  }
  auto ch = map(memfd, geometry, side, how == Attach::checked);
  if (!ch) return fail(ch.error());
  return check_header(std::move(*ch), geometry);
}

void* Channel::premap(int memfd, const ChannelGeometry& geometry) {
  if (*geometry.check() != '\0') {
    errno = EINVAL;
    return nullptr;
  }
  void* p = ::mmap(nullptr, geometry.mapping_size(), PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
  return p == MAP_FAILED ? nullptr : p;
}

SysResult<Channel> Channel::adopt(void* mapping, int memfd, const ChannelGeometry& geometry,
                                  ChannelSide side, Attach how) {
  if (const char* bad = geometry.check(); *bad != '\0') {
    // Not ours to size without a valid geometry: the caller still owns the mapping.
    return fail(
        plain_error("channel adopt", std::string(bad) + " (" + geometry_text(geometry) + ")"));
  }
  if (how == Attach::checked) {
    if (auto ok = check_memfd(memfd, geometry); !ok) {
      ::munmap(mapping, geometry.mapping_size());
      return fail(ok.error());
    }
  }
  Channel ch = over(mapping, geometry, side, how == Attach::checked);
  if (how == Attach::inherited) return ch;
  return check_header(std::move(ch), geometry);
}

bool Channel::header_matches(const void* mapping, const ChannelGeometry& geometry) {
  // Read once and only compared: each side acts on the geometry it was told, never on this copy.
  L::Header h{};
  std::memcpy(&h, mapping, sizeof h);
  return h.magic == L::kMagic && h.version == L::kVersion && h.slots == geometry.slots &&
         h.slot_size == geometry.slot_size && h.start_index == geometry.start_index;
}

SysResult<void> Channel::check_memfd(int memfd, const ChannelGeometry& geometry) {
  struct stat st{};
  if (::fstat(memfd, &st) != 0) return fail(sys_error("fstat", "channel fd " + std::to_string(memfd)));
  if (static_cast<size_t>(st.st_size) != geometry.mapping_size())
    return fail(plain_error("channel attach", "memfd size " + std::to_string(st.st_size) +
                                                  " != " + std::to_string(geometry.mapping_size()) +
                                                  " for " + geometry_text(geometry)));
  const int seals = ::fcntl(memfd, F_GET_SEALS);
  if (seals < 0) return fail(sys_error("fcntl F_GET_SEALS", "channel fd " + std::to_string(memfd)));
  if ((static_cast<unsigned>(seals) & kSeals) != kSeals)
    return fail(plain_error("channel attach", "memfd lacks the shrink/grow/seal seals"));
  return {};
}

SysResult<Channel> Channel::check_header(Channel ch, const ChannelGeometry& geometry) {
  if (!header_matches(ch.base_, geometry))
    return fail(plain_error("channel attach", "shared header does not match " + geometry_text(geometry)));
  return ch;
}

SysResult<Channel> Channel::map(int memfd, const ChannelGeometry& geometry, ChannelSide side,
                               bool populate) {
  void* p = premap(memfd, geometry);
  if (p == nullptr) return fail(sys_error("mmap", "channel fd " + std::to_string(memfd)));
  return over(p, geometry, side, populate);
}

Channel Channel::over(void* p, const ChannelGeometry& geometry, ChannelSide side, bool populate) {
  const size_t size = geometry.mapping_size();
  Channel ch;
  ch.geometry_ = geometry;
  ch.side_ = side;
  ch.base_ = static_cast<std::byte*>(p);
  ch.size_ = size;
  auto view = [&](unsigned ring) {
    std::byte* r = ch.base_ + L::ring_offset(geometry, ring);
    return RingView{reinterpret_cast<uint32_t*>(r + L::kProducerOffset),
                    reinterpret_cast<uint32_t*>(r + L::kConsumerOffset),
                    reinterpret_cast<uint32_t*>(r + L::kDoorbellOffset),
                    reinterpret_cast<uint32_t*>(r + L::kSpaceOffset), r + L::kControlBytes};
  };
  ch.tx_ = view(side == ChannelSide::a ? 0 : 1);
  ch.rx_ = view(side == ChannelSide::a ? 1 : 0);
  ch.tx_head_ = ch.tx_peer_tail_ = geometry.start_index;
  ch.rx_tail_ = ch.rx_peer_head_ = geometry.start_index;
  // A first touch of a shared page is a page fault (12-27 µs on the November VM, ~1.3 µs on
  // its later host build): an endpoint that waits (a parked instance, the supervisor) takes the
  // ones the first message each way needs now, so that a start does not pay for them. Only
  // those: populating every slot would cost each parked instance its whole ring in memory. Not
  // for Attach::direct, which uses the pages at once. Best effort (5.14+).
  for (unsigned ring = 0; populate && ring < 2; ++ring) {
    const size_t first_slot = size_t{geometry.start_index % geometry.slots} * geometry.slot_size;
    const size_t from = L::ring_offset(geometry, ring) & ~(kPageSize - 1);
    const size_t to = L::ring_offset(geometry, ring) + L::kControlBytes + first_slot + geometry.slot_size;
    (void)::madvise(ch.base_ + from, std::min(to, size) - from, MADV_POPULATE_WRITE);
  }
  return ch;
}

Channel::Channel(Channel&& o) noexcept { *this = std::move(o); }

Channel& Channel::operator=(Channel&& o) noexcept {
  if (this == &o) return *this;
  release_mapping();
  geometry_ = o.geometry_;
  side_ = o.side_;
  base_ = std::exchange(o.base_, nullptr);
  size_ = std::exchange(o.size_, 0);
  tx_ = std::exchange(o.tx_, RingView{});
  rx_ = std::exchange(o.rx_, RingView{});
  tx_head_ = o.tx_head_;
  tx_peer_tail_ = o.tx_peer_tail_;
  rx_tail_ = o.rx_tail_;
  rx_peer_head_ = o.rx_peer_head_;
  rx_freed_ = o.rx_freed_;
  broken_.store(o.broken_.load(std::memory_order_relaxed), std::memory_order_relaxed);
  o.broken_.store(true, std::memory_order_relaxed);  // a moved-from endpoint maps nothing
  spin_ = o.spin_;
  stats_ = o.stats_;
  return *this;
}

Channel::~Channel() { release_mapping(); }

void Channel::release_mapping() {
  if (base_ != nullptr) ::munmap(base_, size_);
  base_ = nullptr;
  size_ = 0;
}

// ---- data path -----------------------------------------------------------------------------

std::byte* Channel::slot(const RingView& ring, uint32_t index) const {
  // slots is a power of two, so the mask keeps every index inside the ring, whatever its value.
  return ring.slots + size_t{index & (geometry_.slots - 1)} * geometry_.slot_size;
}

Unexpected<ChannelError> Channel::mark_corrupt() {
  broken_.store(true, std::memory_order_relaxed);
  return fail(ChannelError::corrupt);
}

ChannelResult<void> Channel::send(std::span<const std::byte> msg, bool wake) {
  if (broken()) return fail(ChannelError::corrupt);
  if (msg.size() > max_message()) return fail(ChannelError::too_big);
  if (tx_head_ - tx_peer_tail_ == geometry_.slots) {
    if (!reload_peer_tail()) return fail(ChannelError::corrupt);
    if (tx_head_ - tx_peer_tail_ == geometry_.slots) return fail(ChannelError::full);
  }
  std::byte* s = slot(tx_, tx_head_);
  const uint32_t header[2] = {static_cast<uint32_t>(msg.size()), 0};
  std::memcpy(s, header, sizeof header);
  if (!msg.empty()) std::memcpy(s + ChannelGeometry::kSlotHeader, msg.data(), msg.size());
  // The one store that publishes: before it the peer cannot see the slot, after it the slot is
  // complete. A producer killed at any point leaves no half-written message behind.
  word(tx_.producer).store(++tx_head_, std::memory_order_release);
  ++stats_.sent;
  if (!wake) return {};
  // Dekker with the consumer's "doorbell = sleeping; fence; re-check": either it sees our index,
  // or we see its doorbell. The producer never clears the word: it only rings it 1 → 2, so a
  // ring that lands before the consumer's futex_wait makes that wait return at once.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  uint32_t* bell = tx_.doorbell;
  if (word(bell).load(std::memory_order_relaxed) == L::kSleeping) {
    uint32_t expected = L::kSleeping;
    if (word(bell).compare_exchange_strong(expected, L::kRung, std::memory_order_seq_cst)) {
      futex_wake_shared(bell);
      ++stats_.wakes;
    }
  }
  return {};
}

bool Channel::readable() {
  if (rx_tail_ != rx_peer_head_) return true;
  // Acquire: the slots up to `head` are fully written once we see it.
  const uint32_t head = word(rx_.producer).load(std::memory_order_acquire);
  if (!L::index_advance_ok(rx_peer_head_, head, rx_tail_ + geometry_.slots)) {
    (void)mark_corrupt();
    return false;
  }
  rx_peer_head_ = head;
  if (rx_tail_ != head) return true;
  if (rx_freed_) ring_space_bell();
  return false;
}

// Dekker with the producer's "space = sleeping; fence; re-check" (send_wait), like send()'s with
// the consumer. Looked at only when the ring is read empty: a producer waits only on a full ring,
// and a consumer that reads a full ring goes on until it is empty (or stops reading, when the
// producer should wait). So one fence per drained batch instead of one per message.
void Channel::ring_space_bell() {
  rx_freed_ = false;
  std::atomic_thread_fence(std::memory_order_seq_cst);
  uint32_t* bell = rx_.space;
  if (word(bell).load(std::memory_order_relaxed) != L::kSleeping) return;
  uint32_t expected = L::kSleeping;
  if (word(bell).compare_exchange_strong(expected, L::kRung, std::memory_order_seq_cst)) {
    futex_wake_shared(bell);
    ++stats_.space_wakes;
  }
}

bool Channel::reload_peer_tail() {
  // Acquire: the peer finished reading the slots it gives back before we overwrite them.
  const uint32_t tail = word(tx_.consumer).load(std::memory_order_acquire);
  if (!L::index_advance_ok(tx_peer_tail_, tail, tx_head_)) {
    (void)mark_corrupt();
    return false;
  }
  tx_peer_tail_ = tail;
  return true;
}

bool Channel::sendable() {
  if (tx_head_ - tx_peer_tail_ != geometry_.slots) return true;
  return reload_peer_tail() && tx_head_ - tx_peer_tail_ != geometry_.slots;
}

ChannelResult<size_t> Channel::try_recv(std::span<std::byte> buf) {
  if (broken()) return fail(ChannelError::corrupt);
  if (!readable()) return fail(broken() ? ChannelError::corrupt : ChannelError::empty);
  const std::byte* s = slot(rx_, rx_tail_);
  // Loaded once: a peer rewriting the length after the check cannot change what we copy.
  const uint32_t len =
      std::atomic_ref<uint32_t>(*reinterpret_cast<uint32_t*>(const_cast<std::byte*>(s)))
          .load(std::memory_order_relaxed);
  if (len > max_message()) return mark_corrupt();
  if (len > buf.size()) return fail(ChannelError::buffer_too_small);
  // The payload may still be scribbled by a hostile peer while we copy: it is content, copied
  // within the slot's bounds, and the caller treats it as untrusted.
  if (len != 0) std::memcpy(buf.data(), s + ChannelGeometry::kSlotHeader, len);
  // Release: our copy is done before the producer may reuse the slot.
  word(rx_.consumer).store(++rx_tail_, std::memory_order_release);
  rx_freed_ = true;
  ++stats_.received;
  return size_t{len};
}

ChannelResult<void> Channel::wait_readable(std::chrono::nanoseconds timeout) {
  if (broken()) return fail(ChannelError::corrupt);
  if (readable()) return {};
  if (broken()) return fail(ChannelError::corrupt);
  // Clamped so that now + timeout cannot overflow (nanoseconds::max() means "a year" here).
  timeout = std::clamp(timeout, std::chrono::nanoseconds(0),
                       std::chrono::nanoseconds(std::chrono::hours(24 * 365)));
  const auto start = Clock::now();
  const auto deadline = start + timeout;
  // Spin: cheap loads of the peer's index, a pause between them, the clock every 64 rounds.
  if (spin_.count() > 0) {
    const auto spin_end = start + std::min(spin_, timeout);
    for (unsigned i = 1;; ++i) {
      if (readable()) return {};
      if (broken()) return fail(ChannelError::corrupt);
      cpu_relax();
      if (i % 64 == 0 && Clock::now() >= spin_end) break;
    }
  }
  return sleep_on(rx_.doorbell, &Channel::readable, deadline, stats_.sleeps);
}

ChannelResult<void> Channel::sleep_on(uint32_t* bell, bool (Channel::*ready)(), Clock::time_point deadline,
                                      uint64_t& sleeps) {
  for (;;) {
    // Announce, fence, re-check, then wait for the bell to leave "sleeping".
    word(bell).store(L::kSleeping, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    const bool is_ready = (this->*ready)();
    const auto left = deadline - Clock::now();
    if (is_ready || broken() || left.count() <= 0) {
      word(bell).store(L::kAwake, std::memory_order_relaxed);
      if (is_ready) return {};
      return fail(broken() ? ChannelError::corrupt : ChannelError::timeout);
    }
    ++sleeps;
    // A peer that scribbles the bell can only make this return early (we loop, bounded by the
    // deadline) or make it sleep until the deadline; both are its own loss.
    (void)futex_wait_shared(bell, L::kSleeping, left);
    word(bell).store(L::kAwake, std::memory_order_relaxed);  // only the side that sleeps clears it
  }
}

ChannelResult<void> Channel::spin_until_readable(const std::function<bool()>& give_up) {
  for (unsigned i = 1;; ++i) {
    if (readable()) return {};
    if (broken()) return fail(ChannelError::corrupt);
    cpu_relax();
    if (i % 64 == 0 && give_up()) return fail(ChannelError::timeout);
  }
}

static_assert(Channel::kAsyncWaitValue == L::kSleeping);

ChannelResult<bool> Channel::begin_async_wait() {
  if (broken()) return fail(ChannelError::corrupt);
  // wait_readable()'s announce, fence, re-check; the waiting is the caller's.
  word(rx_.doorbell).store(L::kSleeping, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_seq_cst);
  const bool ready = readable();
  if (broken()) return fail(ChannelError::corrupt);
  if (ready) word(rx_.doorbell).store(L::kAwake, std::memory_order_relaxed);
  return ready;
}

void Channel::end_async_wait() {
  if (base_ != nullptr) word(rx_.doorbell).store(L::kAwake, std::memory_order_relaxed);  // only the consumer clears it
}

ChannelResult<uint32_t> Channel::send_capacity() {
  if (broken() || !reload_peer_tail()) return fail(ChannelError::corrupt);
  return geometry_.slots - (tx_head_ - tx_peer_tail_);
}

ChannelResult<bool> Channel::begin_async_space_wait(uint32_t wanted) {
  if (broken()) return fail(ChannelError::corrupt);
  // sleep_on()'s announce, fence, re-check on the space bell; the waiting is the caller's.
  word(tx_.space).store(L::kSleeping, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (!reload_peer_tail()) {
    word(tx_.space).store(L::kAwake, std::memory_order_relaxed);
    return fail(ChannelError::corrupt);
  }
  const bool ready = geometry_.slots - (tx_head_ - tx_peer_tail_) >= std::min(wanted, geometry_.slots);
  if (ready) word(tx_.space).store(L::kAwake, std::memory_order_relaxed);
  return ready;
}

void Channel::end_async_space_wait() {
  if (base_ != nullptr) word(tx_.space).store(L::kAwake, std::memory_order_relaxed);  // only the producer clears it
}

ChannelResult<void> Channel::send_wait(std::span<const std::byte> msg, std::chrono::nanoseconds timeout) {
  // Room (nearly always): no clock read, which costs as much as the send on some VMs.
  if (auto sent = send(msg); sent.ok() || sent.error() != ChannelError::full) return sent;
  timeout = std::clamp(timeout, std::chrono::nanoseconds(0), std::chrono::nanoseconds(std::chrono::hours(24 * 365)));
  const auto start = Clock::now();
  const auto deadline = start + timeout;
  // Spin first: a consumer that is reading frees a slot within microseconds.
  const auto spin_end = start + std::min(spin_, timeout);
  for (unsigned i = 1;; ++i) {
    cpu_relax();
    auto sent = send(msg);
    if (sent.ok() || sent.error() != ChannelError::full) return sent;
    if (i % 64 == 0 && Clock::now() >= spin_end) break;
  }
  // Then sleep on the space bell, which the consumer rings once it has read the ring empty.
  if (auto slept = sleep_on(tx_.space, &Channel::sendable, deadline, stats_.space_sleeps); !slept) return slept;
  return send(msg);
}

ChannelResult<size_t> Channel::recv(std::span<std::byte> buf, std::chrono::nanoseconds timeout) {
  auto r = try_recv(buf);
  if (r.ok() || r.error() != ChannelError::empty) return r;
  if (auto w = wait_readable(timeout); !w) return fail(w.error());
  return try_recv(buf);
}

}  // namespace plume::fwp
