// LogBuffer: the last `capacity` bytes a worker wrote to one stream. A worker that floods its
// stdout costs plumed CPU, never unbounded memory.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace plume::kernel {

class LogBuffer {
 public:
  explicit LogBuffer(size_t capacity) : capacity_(capacity) {}
  void append(const char* data, size_t n);
  // The retained bytes, oldest first.
  std::string contents() const;
  // The retained bytes from absolute offset `offset` on (the stream's byte count when a reader
  // last looked: total()). Those before it that were dropped meanwhile are counted in `skipped`.
  std::string since(uint64_t offset, uint64_t& skipped) const;
  uint64_t dropped() const { return dropped_; }
  uint64_t total() const { return total_; }

 private:
  size_t capacity_;
  std::string ring_;  // grows to capacity_, then wraps at head_
  size_t head_ = 0;   // next write position once full
  uint64_t dropped_ = 0;
  uint64_t total_ = 0;
};

}  // namespace plume::kernel
