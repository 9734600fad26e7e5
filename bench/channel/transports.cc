#include "transports.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <optional>

#include "plume/fwp/channel.h"

namespace plume::bench {
namespace {

using namespace std::chrono_literals;

[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "channel_bench: %s: %s\n", what, std::strerror(errno));
  std::_Exit(3);
}

void write_all(int fd, const std::byte* p, size_t n) {
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) die("write");
    p += w;
    n -= static_cast<size_t>(w);
  }
}

void read_all(int fd, std::byte* p, size_t n) {
  while (n > 0) {
    const ssize_t r = ::read(fd, p, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) die("read");
    p += r;
    n -= static_cast<size_t>(r);
  }
}

// ---- Plume's channel --------------------------------------------------------------------------

class ChannelTransport : public Transport {
 public:
  // What the producer does while the ring is full: pause-spin, sched_yield, or sleep on the
  // ring's space bell (Channel::send_wait, what libplume's plume_send does).
  enum class WhenFull { spin, yield, sleep };
  ChannelTransport(std::chrono::nanoseconds spin, WhenFull when_full) : when_full_(when_full), spin_(spin) {
    auto c = fwp::Channel::create(geometry_);
    if (!c) {
      std::fprintf(stderr, "channel_bench: %s\n", c.error().message().c_str());
      std::_Exit(3);
    }
    fd_ = std::move(c->memfd);
    a_.emplace(std::move(c->endpoint));
  }
  void open(int side) override {
    if (side == 1) {
      auto b = fwp::Channel::attach(fd_.get(), geometry_, fwp::ChannelSide::b);
      if (!b) {
        std::fprintf(stderr, "channel_bench: %s\n", b.error().message().c_str());
        std::_Exit(3);
      }
      a_.reset();
      a_.emplace(std::move(*b));
    }
    a_->set_spin(spin_);
  }
  void send(const std::byte* msg, size_t n) override {
    if (when_full_ == WhenFull::sleep) {
      auto r = a_->send_wait({msg, n}, 10s);
      if (!r) die(fwp::channel_error_name(r.error()));
      return;
    }
    for (;;) {
      auto r = a_->send({msg, n});
      if (r) return;
      if (r.error() != fwp::ChannelError::full) die(fwp::channel_error_name(r.error()));
      if (when_full_ == WhenFull::spin) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
      } else {
        ::sched_yield();
      }
    }
  }
  void recv(std::byte* msg, size_t n) override {
    auto r = a_->recv({msg, n}, 10s);
    if (!r) die(fwp::channel_error_name(r.error()));
    if (*r != n) die("short channel message");
  }

 private:
  fwp::ChannelGeometry geometry_{64, 128};
  WhenFull when_full_;
  std::chrono::nanoseconds spin_;
  UniqueFd fd_;
  std::optional<fwp::Channel> a_;
};

// ---- kernel peers -----------------------------------------------------------------------------

class PipeTransport : public Transport {
 public:
  PipeTransport() {
    if (::pipe2(down_, O_CLOEXEC) != 0 || ::pipe2(up_, O_CLOEXEC) != 0) die("pipe2");
  }
  ~PipeTransport() override {
    for (int fd : {down_[0], down_[1], up_[0], up_[1]})
      if (fd >= 0) ::close(fd);
  }
  void open(int side) override {
    // Parent writes down_, reads up_; the child the reverse.
    in_ = side == 0 ? up_[0] : down_[0];
    out_ = side == 0 ? down_[1] : up_[1];
  }
  void send(const std::byte* msg, size_t n) override { write_all(out_, msg, n); }
  void recv(std::byte* msg, size_t n) override { read_all(in_, msg, n); }

 private:
  int down_[2] = {-1, -1}, up_[2] = {-1, -1};
  int in_ = -1, out_ = -1;
};

class SeqpacketTransport : public Transport {
 public:
  SeqpacketTransport() {
    if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv_) != 0) die("socketpair");
  }
  ~SeqpacketTransport() override {
    ::close(sv_[0]);
    ::close(sv_[1]);
  }
  void open(int side) override { fd_ = sv_[side]; }
  void send(const std::byte* msg, size_t n) override {
    while (::send(fd_, msg, n, MSG_NOSIGNAL) != static_cast<ssize_t>(n))
      if (errno != EINTR) die("send");
  }
  void recv(std::byte* msg, size_t n) override {
    while (::recv(fd_, msg, n, 0) != static_cast<ssize_t>(n))
      if (errno != EINTR) die("recv");
  }

 private:
  int sv_[2] = {-1, -1};
  int fd_ = -1;
};

// A shared-memory ring per direction with an eventfd as the doorbell, rung on every message: the
// common "shared memory + eventfd" design that a futex doorbell rung only for sleepers replaces.
class EventfdTransport : public Transport {
 public:
  explicit EventfdTransport(size_t msg_size) : msg_size_(msg_size) {
    void* p = ::mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) die("mmap");
    shared_ = new (p) Shared();
    for (int& fd : efd_)
      if ((fd = ::eventfd(0, EFD_CLOEXEC)) < 0) die("eventfd");
  }
  ~EventfdTransport() override {
    ::munmap(shared_, sizeof(Shared));
    ::close(efd_[0]);
    ::close(efd_[1]);
  }
  void open(int side) override {
    out_ = side == 0 ? 0 : 1;
    in_ = 1 - out_;
  }
  void send(const std::byte* msg, size_t n) override {
    Ring& r = shared_->ring[out_];
    const uint32_t head = r.head.load(std::memory_order_relaxed);
    while (head - r.tail.load(std::memory_order_acquire) == kSlots) ::sched_yield();
    std::memcpy(r.slot[head % kSlots], msg, n);
    r.head.store(head + 1, std::memory_order_release);
    const uint64_t one = 1;
    write_all(efd_[out_], reinterpret_cast<const std::byte*>(&one), sizeof one);
  }
  void recv(std::byte* msg, size_t n) override {
    if (credits_ == 0) {
      uint64_t c = 0;
      read_all(efd_[in_], reinterpret_cast<std::byte*>(&c), sizeof c);
      credits_ = c;
    }
    Ring& r = shared_->ring[in_];
    const uint32_t tail = r.tail.load(std::memory_order_relaxed);
    std::memcpy(msg, r.slot[tail % kSlots], std::min(n, msg_size_));
    r.tail.store(tail + 1, std::memory_order_release);
    --credits_;
  }

 private:
  static constexpr uint32_t kSlots = 64;
  struct Ring {
    alignas(128) std::atomic<uint32_t> head{0};
    alignas(128) std::atomic<uint32_t> tail{0};
    alignas(64) std::byte slot[kSlots][128];
  };
  struct Shared {
    Ring ring[2];
  };
  size_t msg_size_;
  Shared* shared_ = nullptr;
  int efd_[2] = {-1, -1};
  int in_ = 0, out_ = 0;
  uint64_t credits_ = 0;
};

}  // namespace

std::vector<std::string> transport_names() {
  return {"channel_spin", "channel_spin5us", "channel_sleep", "channel_wait", "pipe", "unix_seqpacket", "eventfd"};
}

std::unique_ptr<Transport> make_transport(const std::string& name, size_t msg_size) {
  using When = ChannelTransport::WhenFull;
  if (name == "channel_spin") return std::make_unique<ChannelTransport>(std::chrono::hours(1), When::spin);
  if (name == "channel_spin5us") return std::make_unique<ChannelTransport>(5us, When::yield);
  if (name == "channel_sleep") return std::make_unique<ChannelTransport>(0ns, When::yield);
  if (name == "channel_wait") return std::make_unique<ChannelTransport>(5us, When::sleep);
  if (name == "pipe") return std::make_unique<PipeTransport>();
  if (name == "unix_seqpacket") return std::make_unique<SeqpacketTransport>();
  if (name == "eventfd") return std::make_unique<EventfdTransport>(msg_size);
  return nullptr;
}

}  // namespace plume::bench
