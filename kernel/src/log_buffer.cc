#include "log_buffer.h"

#include <algorithm>

namespace plume::kernel {

void LogBuffer::append(const char* data, size_t n) {
  total_ += n;
  if (capacity_ == 0) {
    dropped_ += n;
    return;
  }
  if (n >= capacity_) {  // only the tail of this chunk survives
    dropped_ += ring_.size() + (n - capacity_);
    ring_.assign(data + (n - capacity_), capacity_);
    head_ = 0;
    return;
  }
  if (ring_.size() < capacity_) {
    size_t room = capacity_ - ring_.size();
    size_t take = std::min(room, n);
    ring_.append(data, take);
    data += take;
    n -= take;
    head_ = 0;
    if (n == 0) return;
  }
  // Full: overwrite the oldest bytes at head_.
  dropped_ += n;
  while (n > 0) {
    size_t chunk = std::min(n, capacity_ - head_);
    ring_.replace(head_, chunk, data, chunk);
    head_ = (head_ + chunk) % capacity_;
    data += chunk;
    n -= chunk;
  }
}

std::string LogBuffer::contents() const {
  if (ring_.size() < capacity_ || head_ == 0) return ring_;
  return ring_.substr(head_) + ring_.substr(0, head_);
}

std::string LogBuffer::since(uint64_t offset, uint64_t& skipped) const {
  skipped = offset < dropped_ ? dropped_ - offset : 0;
  if (offset >= total_) return {};
  return contents().substr(static_cast<size_t>(std::max(offset, dropped_) - dropped_));
}

}  // namespace plume::kernel
