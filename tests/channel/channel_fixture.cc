#include "channel/channel_fixture.h"

#include <poll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <utility>

namespace plume::fwp::test {

Child::Child(Child&& o) noexcept : pid(std::exchange(o.pid, -1)), pidfd(std::move(o.pidfd)) {}

Child& Child::operator=(Child&& o) noexcept {
  if (this != &o) {
    reap(*this, std::chrono::milliseconds(0));
    pid = std::exchange(o.pid, -1);
    pidfd = std::move(o.pidfd);
  }
  return *this;
}

Child::~Child() { reap(*this, std::chrono::milliseconds(0)); }

Child fork_child(const std::function<int()>& fn) {
  std::fflush(nullptr);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(99);  // the parent died before prctl
    ::_exit(fn());
  }
  Child c;
  c.pid = pid;
  c.pidfd.reset(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  if (!c.pidfd) throw std::runtime_error("pidfd_open failed");
  return c;
}

bool wait_exited(const Child& c, std::chrono::milliseconds timeout) {
  pollfd p{c.pidfd.get(), POLLIN, 0};
  return ::poll(&p, 1, static_cast<int>(timeout.count())) == 1;
}

int reap(Child& c, std::chrono::milliseconds timeout) {
  if (c.pid < 0) return -1;
  if (!wait_exited(c, timeout)) ::kill(c.pid, SIGKILL);
  int status = 0;
  const pid_t r = ::waitpid(c.pid, &status, 0);
  c.pid = -1;
  c.pidfd.reset();
  return r < 0 ? -1 : status;
}

size_t message_size(uint64_t seq, size_t max) {
  return 8 + static_cast<size_t>((seq * 2654435761u) % (max - 7));
}

void fill_message(uint64_t seq, std::span<std::byte> out) {
  std::memcpy(out.data(), &seq, std::min(out.size(), sizeof seq));
  for (size_t i = sizeof seq; i < out.size(); ++i)
    out[i] = static_cast<std::byte>((seq * 31 + i * 7) & 0xff);
}

bool check_message(uint64_t seq, std::span<const std::byte> in) {
  if (in.size() < sizeof seq) return false;
  uint64_t got = 0;
  std::memcpy(&got, in.data(), sizeof got);
  if (got != seq) return false;
  for (size_t i = sizeof seq; i < in.size(); ++i)
    if (in[i] != static_cast<std::byte>((seq * 31 + i * 7) & 0xff)) return false;
  return true;
}

RawMapping::RawMapping(int memfd, size_t size) : size_(size) {
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
  if (p == MAP_FAILED) throw std::runtime_error("mmap failed");
  p_ = static_cast<std::byte*>(p);
}

RawMapping::~RawMapping() { ::munmap(p_, size_); }

uint32_t* RawMapping::word_at(size_t offset) const {
  return reinterpret_cast<uint32_t*>(p_ + offset);
}

RingOffsets ring_offsets(const ChannelGeometry& g, unsigned ring) {
  const size_t ring_bytes = 4 * 128 + size_t{g.slots} * g.slot_size;
  const size_t base = 128 + ring * ring_bytes;
  return {base, base + 128, base + 256, base + 384, base + 512};
}

}  // namespace plume::fwp::test
