#include "staged_channels.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

namespace plume::libplume {

bool StagedChannels::add(uint32_t serial, int fd) {
  if (serial == 0 || count_ == kCapacity || fd_of(serial) >= 0) {
    ::close(fd);
    return false;
  }
  entries_[count_++] = Entry{serial, fd};
  if (count_ == 1) premap_oldest();
  return true;
}

int StagedChannels::fd_of(uint32_t serial) const {
  for (int i = 0; i < count_; ++i) {
    if (entries_[i].serial == serial) return entries_[i].fd;
  }
  return -1;
}

unsigned StagedChannels::highest_fd() const {
  unsigned highest = 0;
  for (int i = 0; i < count_; ++i) highest = std::max(highest, static_cast<unsigned>(entries_[i].fd));
  return highest;
}

void StagedChannels::remove(uint32_t serial) {
  int i = 0;
  while (i < count_ && entries_[i].serial != serial) ++i;
  if (i == count_) return;
  ::close(entries_[i].fd);
  if (i == 0 && head_mapping_ != nullptr) {
    ::munmap(head_mapping_, geometry_.mapping_size());
    head_mapping_ = nullptr;
  }
  std::memmove(&entries_[i], &entries_[i + 1], sizeof(Entry) * static_cast<size_t>(count_ - i - 1));
  --count_;
  if (i == 0) premap_oldest();
}

void StagedChannels::unmap_premapped_in_child() {
  if (head_mapping_ != nullptr) ::munmap(head_mapping_, geometry_.mapping_size());
  head_mapping_ = nullptr;
}

void StagedChannels::premap_oldest() {
  // A failure (ENOMEM) only means the child maps the channel itself.
  if (count_ > 0 && head_mapping_ == nullptr)
    head_mapping_ = fwp::Channel::premap(entries_[0].fd, geometry_);
}

}  // namespace plume::libplume
