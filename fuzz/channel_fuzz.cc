// libFuzzer target for Channel: the supervisor's endpoint (side a) facing a worker (side b) that
// may write anything anywhere in the shared mapping. The input is a geometry, then a program of
// operations: sends and receives on both endpoints (b's being the well-behaved libplume side) and
// hostile 4-byte writes of the worker into the mapping: its indices, slot lengths, doorbells, the
// supervisor's own words, or any byte.
//
// Checked, always: the supervisor never reads or copies outside its mapping or buffer (ASan), a
// message it accepts fits both the slot and the buffer, and once it reports `corrupt` every later
// call does too. Checked while the worker has written nothing outside the protocol: every result
// and every byte received, both ways, matches a model of two FIFO queues of `slots` messages.
#include <sys/mman.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <vector>

#include "../fwp/src/channel_layout.h"
#include "plume/fwp/channel.h"

namespace {

using plume::fwp::Channel;
using plume::fwp::ChannelError;
using plume::fwp::ChannelGeometry;
using plume::fwp::ChannelSide;
namespace L = plume::fwp::channel_layout;

void check(bool ok) {
  if (!ok) std::abort();
}

// Reads the program; past its end every byte is 0.
struct Input {
  const uint8_t* p;
  size_t left;
  uint8_t byte() {
    if (left == 0) return 0;
    --left;
    return *p++;
  }
  uint32_t word() {
    uint32_t w = 0;
    for (int i = 0; i < 4; ++i) w |= uint32_t{byte()} << (8 * i);
    return w;
  }
};

// One direction of traffic as it should be: what was sent and not yet received.
struct Model {
  std::deque<std::vector<std::byte>> queued;
};

// A message of `len` bytes whose content says which one it is, so a mix-up shows.
std::vector<std::byte> make_message(size_t len, uint32_t serial) {
  std::vector<std::byte> m(len);
  for (size_t i = 0; i < len; ++i) m[i] = static_cast<std::byte>((serial * 131 + i * 7) & 0xff);
  return m;
}

class Run {
 public:
  Run(Channel a, Channel b, std::byte* base, size_t size, const ChannelGeometry& g)
      : a_(std::move(a)), b_(std::move(b)), base_(base), size_(size), g_(g) {
    a_.set_spin(std::chrono::nanoseconds(0));
  }

  void step(Input& in) {
    switch (in.byte() % 7) {
      case 0: send(a_, to_b_, in); break;
      case 1: send(b_, to_a_, in); break;
      case 2: receive_on_a(in, /*waiting=*/false); break;
      case 3: receive_on_a(in, /*waiting=*/true); break;
      case 4: receive_on_b(in); break;
      case 5:
      case 6: scribble(in); break;
    }
  }

 private:
  // Lengths up to 8 past the largest message, to reach too_big.
  void send(Channel& from, Model& model, Input& in) {
    const size_t len = in.byte() % (g_.max_message() + 9);
    const auto msg = make_message(len, serial_++);
    const bool was_broken = from.broken();
    auto r = from.send(msg);
    if (was_broken) {
      check(!r && r.error() == ChannelError::corrupt);
      return;
    }
    if (!r && r.error() == ChannelError::corrupt) check(from.broken());
    if (scribbled_) return;  // the model no longer says what the peer sees
    if (len > g_.max_message()) {
      check(!r && r.error() == ChannelError::too_big);
    } else if (model.queued.size() == g_.slots) {
      check(!r && r.error() == ChannelError::full);
    } else {
      check(r.ok());
      model.queued.push_back(msg);
    }
  }

  // Around the largest message, or as large as the whole mapping: a length the worker wrote
  // must be refused for the slot, not only for the buffer.
  size_t buffer_size(Input& in) {
    const uint8_t b = in.byte();
    return (b & 0x80) != 0 ? size_ : b % (g_.max_message() + 9);
  }

  // The supervisor's side: what must hold whatever the worker wrote.
  void receive_on_a(Input& in, bool waiting) {
    std::vector<std::byte> buf(buffer_size(in));
    const bool was_broken = a_.broken();
    auto r = waiting ? a_.recv(buf, std::chrono::nanoseconds(0)) : a_.try_recv(buf);
    if (was_broken) {
      check(!r && r.error() == ChannelError::corrupt);
      return;
    }
    if (r) check(*r <= g_.max_message() && *r <= buf.size());
    if (!r && r.error() == ChannelError::corrupt) check(a_.broken());
    if (scribbled_) return;
    check(!a_.broken());
    expect(r, buf, to_a_, waiting ? ChannelError::timeout : ChannelError::empty);
  }

  void receive_on_b(Input& in) {
    std::vector<std::byte> buf(buffer_size(in));
    auto r = b_.try_recv(buf);
    if (scribbled_) return;  // b's side may find the worker's scribbles: not the supervisor's case
    expect(r, buf, to_b_, ChannelError::empty);
  }

  void expect(const plume::fwp::ChannelResult<size_t>& r, const std::vector<std::byte>& buf,
              Model& model, ChannelError when_empty) {
    if (model.queued.empty()) {
      check(!r && r.error() == when_empty);
      return;
    }
    const auto& next = model.queued.front();
    if (next.size() > buf.size()) {
      check(!r && r.error() == ChannelError::buffer_too_small);
      return;
    }
    check(r.ok() && *r == next.size());
    check(next.empty() || std::memcmp(buf.data(), next.data(), next.size()) == 0);
    model.queued.pop_front();
  }

  // The worker writes 4 bytes somewhere: mostly where it hurts.
  void scribble(Input& in) {
    const uint8_t where = in.byte();
    const uint8_t how = in.byte();
    const unsigned ring = where & 1;
    const size_t ring_at = L::ring_offset(g_, ring);
    const size_t slot_at = ring_at + L::kControlBytes + size_t{in.byte() % g_.slots} * g_.slot_size;
    size_t at = 0;
    switch ((where >> 1) % 7) {
      case 0: at = ring_at + L::kProducerOffset; break;
      case 1: at = ring_at + L::kConsumerOffset; break;
      case 2: at = ring_at + L::kDoorbellOffset; break;
      case 3: at = slot_at; break;  // a slot's length
      case 4: at = slot_at + 4 + (in.byte() % (g_.slot_size - 4)) / 4 * 4; break;  // the rest
      case 6: at = ring_at + L::kSpaceOffset; break;
      case 5: {  // anywhere: the header, the supervisor's own words, padding
        const size_t hi = in.byte();
        at = (hi << 8 | in.byte()) % (size_ - 3) / 4 * 4;
        break;
      }
    }
    uint32_t old = 0;
    std::memcpy(&old, base_ + at, 4);
    // Random words are mostly huge; what slips past a missing check is near a bound: an index a
    // little ahead or behind, a length just over the largest message.
    const auto delta = static_cast<uint32_t>(static_cast<int8_t>(in.byte()));
    uint32_t value = 0;
    switch (how % 4) {
      case 0: value = in.word(); break;
      case 1: value = old + delta; break;
      case 2: value = static_cast<uint32_t>(g_.max_message()) + delta; break;
      case 3: value = delta & 0xff; break;
    }
    // Writing what is already there changes nothing: the model still holds.
    if (old == value) return;
    std::memcpy(base_ + at, &value, 4);
    scribbled_ = true;
  }

  Channel a_;
  Channel b_;
  std::byte* base_;  // the worker's view of the mapping: b's own mmap of the memfd
  size_t size_;
  ChannelGeometry g_;
  Model to_a_, to_b_;
  uint32_t serial_ = 0;
  bool scribbled_ = false;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Input in{data, size};
  // Small rings, so that full, wrap-around and every slot are reached; indices that start near
  // 2^32 when asked, so that the counters themselves wrap.
  ChannelGeometry g;
  const uint8_t shape = in.byte();
  g.slots = 2u << (shape & 3);
  g.slot_size = 64u << ((shape >> 2) & 1);
  g.start_index = (shape & 0x10) ? 0xfffffff0u + (shape >> 5) : 0;
  auto created = Channel::create(g);
  check(created.ok());
  auto b = Channel::attach(created->memfd.get(), g, ChannelSide::b);
  check(b.ok());
  // A third mapping of the same memfd is the worker's hand: its writes land where b's would.
  void* hand = Channel::premap(created->memfd.get(), g);
  check(hand != nullptr);
  {
    Run run(std::move(created->endpoint), std::move(*b), static_cast<std::byte*>(hand),
            g.mapping_size(), g);
    for (int steps = 0; in.left > 0 && steps < 4096; ++steps) run.step(in);
  }
  ::munmap(hand, g.mapping_size());
  return 0;
}
