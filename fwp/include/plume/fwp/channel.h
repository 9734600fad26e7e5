// Channel: the supervisor ↔ worker link. Two single-producer/single-consumer rings (a→b, b→a) of
// fixed-size, cache-line-aligned slots in one sealed memfd, mapped by exactly two processes: the
// creator (side a, the supervisor) and one peer (side b, a worker). A consumer spins briefly, then
// sleeps on a futex word that only it clears; a producer rings it only when it sleeps.
//
// Trust: every index, length and word an endpoint reads from the shared mapping is untrusted; both
// sides check them before use, and the first violation breaks the endpoint for good
// (ChannelError::corrupt from every later call). Each endpoint keeps its own private copy of the
// geometry and of its own indices and never reads them back from shared memory. A half-written
// message is never visible (publication is one release store of the producer index), so a peer
// that dies mid-message leaves everything it published readable. The channel cannot tell that its
// peer died: callers wait with a timeout and check the peer's pidfd. Layout, protocol and measured
// costs: docs/channels.md.
//
// Threads: one thread may send while another receives on the same endpoint; two concurrent senders
// (or receivers) on one endpoint are not allowed (single producer, single consumer).
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>

#include "plume/base/result.h"
#include "plume/base/sys_error.h"
#include "plume/base/unique_fd.h"

namespace plume::fwp {

// The closed list of data-path errors. Setup (create/attach) fails with a SysError instead.
enum class ChannelError : uint8_t {
  full,              // send: no free slot; retry after the peer consumed
  empty,             // try_recv: nothing to read
  too_big,           // send: message longer than max_message(); the caller splits it
  buffer_too_small,  // recv: the next message does not fit the buffer; it stays in the ring
  timeout,           // recv / wait_readable: nothing arrived in time (check the peer's pidfd)
  corrupt,           // the peer broke the protocol (bad index, length, ...); the endpoint is dead
};
const char* channel_error_name(ChannelError e);

template <class T>
using ChannelResult = Result<T, ChannelError>;

// The shape of both rings. Each side keeps the copy it created or was told (by the supervisor,
// out of band); the copy in the shared header is only cross-checked at attach, never used.
struct ChannelGeometry {
  static constexpr uint32_t kSlotHeader = 8;  // u32 length + u32 reserved, in front of the payload

  uint32_t slots = 64;       // per ring; a power of two in [2, 65536]
  uint32_t slot_size = 256;  // bytes per slot, header included; a multiple of 64 in [64, 65536]
  // First value of every ring index. Indices are free-running u32s; tests set this near 2^32 to
  // prove wrap-around of the counters themselves. Normally 0.
  uint32_t start_index = 0;

  size_t max_message() const { return slot_size - kSlotHeader; }
  // Bytes of the memfd (page-rounded): header + 2 × (control lines + slots × slot_size).
  size_t mapping_size() const;
  // Empty when usable; otherwise what is wrong ("slots must be a power of two").
  const char* check() const;
  bool operator==(const ChannelGeometry&) const = default;
};

enum class ChannelSide : uint8_t { a, b };  // a: creator/supervisor (sends on ring 0); b: the peer

// Counters kept privately by one endpoint (never in shared memory), for tests and metrics.
struct ChannelStats {
  uint64_t sent = 0;
  uint64_t received = 0;
  uint64_t sleeps = 0;       // futex waits entered by this endpoint's consumer
  uint64_t wakes = 0;        // futex wakes issued by this endpoint's producer
  uint64_t space_sleeps = 0;  // futex waits entered by this endpoint's producer for a free slot
  uint64_t space_wakes = 0;   // futex wakes issued by this endpoint's consumer to such a producer
};

class Channel {
 public:
  struct Created;

  // Creates the memfd (MFD_CLOEXEC | MFD_ALLOW_SEALING), sizes it, seals it against shrinking,
  // growing and further sealing, maps it, and returns it with the creator's (side a) endpoint.
  // The fd is close-on-exec: hand it to a worker by fork, SCM_RIGHTS or an explicit dup2.
  static SysResult<Created> create(const ChannelGeometry& geometry);
  // How attach() gets ready. `checked` checks the fd's size and seals, and takes the faults of
  // the pages the first message each way needs up front (MADV_POPULATE_WRITE: a parked endpoint
  // must not pay them at its start). `direct` skips both, for an instance forked to serve a
  // start at once: its fd came from the supervisor through its own parent, which could hand it
  // anything anyway, so the fd checks protect nothing there, and faulting on first use costs
  // less than the populate calls (~8 µs in the 2-vCPU VM's sandbox). The header is checked
  // either way; a memfd too small for the geometry is a SIGBUS in the attaching process only.
  // `inherited` is `direct` for adopt() of a mapping whose header its maker has checked already
  // (header_matches: a template checks each channel it premaps, while idle): nothing is read, so
  // the shared page's first touch is the first message's, not the setup's. attach() treats it as
  // `direct`.
  enum class Attach : uint8_t { checked, direct, inherited };
  // Maps an existing channel memfd as `side`. Checks that the shared header matches `geometry`
  // (which the caller got from the creator, not from the memfd), and what `how` says above.
  static SysResult<Channel> attach(int memfd, const ChannelGeometry& geometry, ChannelSide side,
                                   Attach how = Attach::checked);
  // The same in two steps, for a mapping made ahead of need: premap() maps the memfd as attach()
  // would (nullptr and errno set on failure); adopt() takes that mapping over with attach()'s
  // checks, and unmaps it if they fail (not for an invalid geometry: then the caller still owns
  // it). A template premaps its next instance's channel while idle, so the child forked with it
  // inherits the mapping instead of calling mmap (~5 µs in the 2-vCPU VM's sandbox, on the start
  // path).
  static void* premap(int memfd, const ChannelGeometry& geometry);
  static SysResult<Channel> adopt(void* mapping, int memfd, const ChannelGeometry& geometry,
                                  ChannelSide side, Attach how = Attach::checked);
  // Whether a premapped channel's shared header matches `geometry` (attach()'s header check).
  static bool header_matches(const void* mapping, const ChannelGeometry& geometry);

  Channel(Channel&& o) noexcept;
  Channel& operator=(Channel&& o) noexcept;
  Channel(const Channel&) = delete;
  Channel& operator=(const Channel&) = delete;
  ~Channel();

  // Copies msg into the next slot and publishes it; wakes the peer if it sleeps, unless
  // `wake` is false: then a sleeping peer sees the message with the next waking send (for a
  // record nobody waits for, when the wake-up would cost the sender its CPU).
  // Errors: full, too_big, corrupt.
  ChannelResult<void> send(std::span<const std::byte> msg, bool wake = true);
  // Like send, but while the ring is full waits up to `timeout` for the peer to free a slot
  // (spinning for spin(), then sleeping on the ring's space bell, which the peer's consumer rings
  // once it has read the ring empty; timeouts beyond a year count as a year). A producer that
  // must not block uses send() and send_capacity(). Errors: timeout, too_big, corrupt.
  ChannelResult<void> send_wait(std::span<const std::byte> msg, std::chrono::nanoseconds timeout);
  // Copies the next message into buf and returns its length. Errors: empty, buffer_too_small,
  // corrupt. Never blocks.
  ChannelResult<size_t> try_recv(std::span<std::byte> buf);
  // Like try_recv, but waits up to `timeout` (spinning for spin(), then sleeping on the futex;
  // timeouts beyond a year count as a year, negative ones as 0).
  // Errors: timeout, buffer_too_small, corrupt.
  ChannelResult<size_t> recv(std::span<std::byte> buf, std::chrono::nanoseconds timeout);
  // Waits until a message can be read (ok), up to `timeout`. Errors: timeout, corrupt.
  ChannelResult<void> wait_readable(std::chrono::nanoseconds timeout);
  // Busy-polls, never sleeping, until a message can be read (ok) or `give_up()`, asked every 64
  // polls, returns true (timeout). For a consumer on CPU time nobody else wants (a spinning
  // standby, libplume). Errors: timeout, corrupt.
  ChannelResult<void> spin_until_readable(const std::function<bool()>& give_up);

  // For a consumer that waits in an event loop instead of a thread (plumed waits on the word with
  // io_uring's IORING_OP_FUTEX_WAIT). begin_async_wait() announces that this consumer sleeps,
  // then re-checks: true when a message is readable after all (the doorbell is awake again:
  // drain, then begin again), false when the caller may now wait for async_wait_word() to leave
  // kAsyncWaitValue. Once that wait ends (or is given up), end_async_wait() before draining.
  // Receives with try_recv() only meanwhile: recv() and wait_readable() use the same doorbell.
  // Errors: corrupt.
  static constexpr uint32_t kAsyncWaitValue = 1;  // channel_layout::kSleeping
  ChannelResult<bool> begin_async_wait();
  void end_async_wait();
  uint32_t* async_wait_word() const { return rx_.doorbell; }
  // Free slots in the sending ring now (the peer's consumer index read again). Errors: corrupt.
  ChannelResult<uint32_t> send_capacity();
  // The same for a producer that waits for room in an event loop (plumed, for a request that may
  // wait): begin_async_space_wait() announces on the space bell, then re-checks: true when
  // `wanted` slots are free after all (the bell is awake again), false when the caller may now
  // wait for async_space_word() to leave kAsyncWaitValue. The peer rings it once it has read the
  // ring empty, so a wake-up means the whole ring is free unless the peer lies. Once the wait
  // ends (or is given up), end_async_space_wait(). Errors: corrupt.
  ChannelResult<bool> begin_async_space_wait(uint32_t wanted);
  void end_async_space_wait();
  uint32_t* async_space_word() const { return tx_.space; }

  // How long a waiting consumer busy-polls before it sleeps (default 5 µs; 0: sleep at once).
  void set_spin(std::chrono::nanoseconds spin) { spin_ = spin; }
  std::chrono::nanoseconds spin() const { return spin_; }

  const ChannelGeometry& geometry() const { return geometry_; }
  ChannelSide side() const { return side_; }
  size_t max_message() const { return geometry_.max_message(); }
  bool broken() const { return broken_.load(std::memory_order_relaxed); }
  const ChannelStats& stats() const { return stats_; }

 private:
  Channel() = default;
  // One ring as seen by this endpoint: where its control words and slots live in the mapping.
  struct RingView {
    uint32_t* producer = nullptr;  // producer index (written by the producer only)
    uint32_t* consumer = nullptr;  // consumer index (written by the consumer only)
    uint32_t* doorbell = nullptr;  // futex word: 0 awake, 1 consumer sleeps, 2 rung
    uint32_t* space = nullptr;     // futex word: 0 awake, 1 producer waits for a slot, 2 rung
    std::byte* slots = nullptr;
  };
  static SysResult<Channel> map(int memfd, const ChannelGeometry& geometry, ChannelSide side,
                                bool populate = true);
  // An endpoint over `mapping` (geometry.mapping_size() bytes of the memfd, owned from now on).
  static Channel over(void* mapping, const ChannelGeometry& geometry, ChannelSide side,
                      bool populate);
  // Attach::checked's checks on the fd: its size and seals.
  static SysResult<void> check_memfd(int memfd, const ChannelGeometry& geometry);
  static SysResult<Channel> check_header(Channel ch, const ChannelGeometry& geometry);
  std::byte* slot(const RingView& ring, uint32_t index) const;
  bool readable();                 // a message is ready; reloads the peer's producer index
  void ring_space_bell();          // wakes a producer that waits for a free slot, if it sleeps
  bool sendable();                 // a slot is free; reloads the peer's consumer index
  // Reads the peer's consumer index into tx_peer_tail_, checked as every read of it is: false
  // (and the endpoint broken) when it lies.
  bool reload_peer_tail();
  // The sleeping half of both wake-up protocols (a consumer on the doorbell, a producer on the
  // space bell): announce on `bell`, fence, re-check `ready`, futex-wait until the peer rings or
  // `deadline`, counting each sleep in `sleeps`. Errors: timeout, corrupt.
  ChannelResult<void> sleep_on(uint32_t* bell, bool (Channel::*ready)(),
                               std::chrono::steady_clock::time_point deadline, uint64_t& sleeps);
  Unexpected<ChannelError> mark_corrupt();  // breaks the endpoint for good
  void release_mapping();

  ChannelGeometry geometry_;
  ChannelSide side_ = ChannelSide::a;
  std::byte* base_ = nullptr;
  size_t size_ = 0;
  RingView tx_;  // this endpoint produces into tx_
  RingView rx_;  // and consumes from rx_
  // Private indices: the truth for this endpoint, never read back from the mapping.
  uint32_t tx_head_ = 0;       // next index this endpoint will publish
  uint32_t tx_peer_tail_ = 0;  // the peer's consumer index, as last checked
  uint32_t rx_tail_ = 0;       // next index this endpoint will read
  uint32_t rx_peer_head_ = 0;  // the peer's producer index, as last checked
  // Slots were freed since this consumer last looked at the space bell: it looks once it has read
  // the ring empty (one fence per drained batch, not per message).
  bool rx_freed_ = false;
  std::atomic<bool> broken_{false};  // set by the sending or the receiving thread
  std::chrono::nanoseconds spin_ = std::chrono::microseconds(5);
  ChannelStats stats_;
};

struct Channel::Created {
  UniqueFd memfd;    // give this to the peer (fork, SCM_RIGHTS); close-on-exec
  Channel endpoint;  // side a
};

}  // namespace plume::fwp
