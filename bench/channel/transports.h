// The peers of the channel benchmark: one bidirectional message link between a parent and a
// forked child, made before fork and then used from both processes (side 0 = parent, 1 = child).
// Every transport moves whole messages of one size and blocks (or spins) until done.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

namespace plume::bench {

class Transport {
 public:
  virtual ~Transport() = default;
  // Called once in each process after fork, before the first message.
  virtual void open(int side) = 0;
  // Blocks until the message is accepted / one message arrived. Aborts the process on failure:
  // a benchmark that silently loses messages would report nonsense.
  virtual void send(const std::byte* msg, size_t n) = 0;
  virtual void recv(std::byte* msg, size_t n) = 0;
};

// Names: channel_spin (both sides busy-poll), channel_spin5us (the default: 5 µs spin, then
// futex), channel_sleep (spin 0: futex at once; a full ring's producer yields), channel_wait
// (as libplume: 5 µs spin, then futex, and a full ring's producer sleeps on the space bell), pipe, unix_seqpacket, eventfd (a shared-memory
// ring whose producer writes an eventfd per message; the consumer blocks in read(2) when empty).
std::vector<std::string> transport_names();
std::unique_ptr<Transport> make_transport(const std::string& name, size_t msg_size);

}  // namespace plume::bench
