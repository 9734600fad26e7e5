#include "staged_channels.h"

#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

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
  if (count_ == 0 || head_mapping_ != nullptr) return;
  // A failure (ENOMEM) only means the child maps the channel itself. Its header is checked here,
  // off the start path, so that the child need not read it (Channel::Attach::inherited); a memfd
  // too small to read (a SIGBUS here) or one whose header does not match is left to the child's
  // own attach, which reports it.
  struct stat st{};
  if (::fstat(entries_[0].fd, &st) != 0 || static_cast<size_t>(st.st_size) < geometry_.mapping_size()) return;
  head_mapping_ = fwp::Channel::premap(entries_[0].fd, geometry_);
  if (head_mapping_ != nullptr && !fwp::Channel::header_matches(head_mapping_, geometry_)) {
    ::munmap(head_mapping_, geometry_.mapping_size());
    head_mapping_ = nullptr;
  }
}

}  // namespace plume::libplume
