// The channels a template holds for FORKs to come (template_protocol.h, "Staging"): their
// memfds, oldest first, and the oldest one mapped ahead of its FORK, while the template is idle,
// so that the child forked with it inherits the mapping instead of calling mmap on the start path.
// No allocation: the table is fixed, and the template's address space stays as it was after init.
#pragma once

#include <cstdint>

#include "plume/fwp/channel.h"

namespace plume::libplume {

class StagedChannels {
 public:
  // The controller keeps at most 64 spare channels staged, plus those of FORKs in flight.
  static constexpr int kCapacity = 256;

  explicit StagedChannels(const fwp::ChannelGeometry& geometry) : geometry_(geometry) {}
  StagedChannels(const StagedChannels&) = delete;
  StagedChannels& operator=(const StagedChannels&) = delete;

  // Takes `fd` over. False when the table is full or `serial` is 0 or held already: the fd is
  // closed, and the FORK naming it will be answered EBADF.
  bool add(uint32_t serial, int fd);
  // The staged memfd of `serial`, or -1.
  int fd_of(uint32_t serial) const;
  // The premapped channel (the oldest staged, its header checked), or nullptr if there is none
  // or it could not be (too small for the geometry, a header that does not match, ENOMEM).
  void* premapped() const { return head_mapping_; }
  uint32_t premapped_serial() const { return head_mapping_ != nullptr ? entries_[0].serial : 0; }
  // Forgets `serial` (forked, or unstaged): closes its fd, unmaps it if it was premapped, and
  // premaps the new oldest. In a child: nothing to do, everything goes with close_range.
  void remove(uint32_t serial);
  // In a child forked for another channel: unmaps its copy of the premapped one, which belongs
  // to a sibling-to-be.
  void unmap_premapped_in_child();

 private:
  void premap_oldest();

  struct Entry {
    uint32_t serial;
    int fd;
  };
  fwp::ChannelGeometry geometry_;
  Entry entries_[kCapacity] = {};
  int count_ = 0;
  void* head_mapping_ = nullptr;  // entries_[0]'s channel, when mapped
};

}  // namespace plume::libplume
