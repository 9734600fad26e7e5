// Helpers for the channel tests: forked peers watched through pidfds, and message patterns that
// make a torn or misplaced byte visible.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "plume/base/unique_fd.h"
#include "plume/fwp/channel.h"

namespace plume::fwp::test {

// A forked child running fn; its exit code is fn's return value (0: success). The child leaves
// with _exit, so no gtest or atexit state runs twice, and it is SIGKILLed when the test process
// dies. A Child that goes out of scope unreaped (a failed ASSERT) is killed and reaped.
struct Child {
  pid_t pid = -1;
  UniqueFd pidfd;
  Child() = default;
  Child(Child&&) noexcept;
  Child& operator=(Child&&) noexcept;
  ~Child();
};
Child fork_child(const std::function<int()>& fn);
// True once the child has exited (pidfd readable), waiting at most `timeout`.
bool wait_exited(const Child& c, std::chrono::milliseconds timeout);
// Reaps the child (SIGKILL first when it has not exited within `timeout`) and returns its wait
// status; -1 when waitpid failed.
int reap(Child& c, std::chrono::milliseconds timeout);

// Message `seq`: its size (varies with seq, in [8, max]) and a byte pattern that names seq in
// every byte, so a torn, stale or shifted payload fails check_message.
size_t message_size(uint64_t seq, size_t max);
void fill_message(uint64_t seq, std::span<std::byte> out);
bool check_message(uint64_t seq, std::span<const std::byte> in);

// A second, raw mapping of a channel memfd: what a hostile peer sees and can scribble on.
class RawMapping {
 public:
  RawMapping(int memfd, size_t size);
  ~RawMapping();
  RawMapping(const RawMapping&) = delete;
  RawMapping& operator=(const RawMapping&) = delete;
  std::byte* data() const { return p_; }
  size_t size() const { return size_; }
  uint32_t* word_at(size_t offset) const;

 private:
  std::byte* p_ = nullptr;
  size_t size_ = 0;
};

// Offsets of a ring's control words and slots (the layout in docs/channels.md), computed here
// independently of the implementation so a layout change has to be made on purpose.
struct RingOffsets {
  size_t producer, consumer, doorbell, space, slots;
};
RingOffsets ring_offsets(const ChannelGeometry& g, unsigned ring);

}  // namespace plume::fwp::test
