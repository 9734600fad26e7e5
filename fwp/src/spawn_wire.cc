// Encoding of the spawn helper's records (spawn_wire.h).
#include "spawn_wire.h"

#include <sys/socket.h>

#include <cerrno>
#include <algorithm>
#include <cstring>
#include <type_traits>

namespace plume::fwp::detail {
namespace {

class Writer {
 public:
  Writer() : out_(own_) {}
  explicit Writer(std::vector<char>& into) : out_(into) {}
  template <typename T>
  void put(const T& v) {
    static_assert(std::is_trivially_copyable_v<T>);
    const char* p = reinterpret_cast<const char*>(&v);
    out_.insert(out_.end(), p, p + sizeof v);
  }
  void put_string(const std::string& s) {
    put(static_cast<uint32_t>(s.size()));
    out_.insert(out_.end(), s.begin(), s.end());
  }
  void put_strings(const std::vector<std::string>& v) {
    put(static_cast<uint32_t>(v.size()));
    for (const std::string& s : v) put_string(s);
  }
  std::vector<char> take() { return std::move(out_); }

 private:
  std::vector<char> own_;
  std::vector<char>& out_;
};

// Reads fields in order; the first short read sets failed() and every later read yields zeros.
class Reader {
 public:
  explicit Reader(const std::vector<char>& in) : in_(in) {}
  template <typename T>
  T get() {
    T v{};
    if (!take(&v, sizeof v)) return T{};
    return v;
  }
  std::string get_string() {
    const auto n = get<uint32_t>();
    if (n > in_.size() - pos_) {
      failed_ = true;
      return {};
    }
    std::string s(in_.data() + pos_, n);
    pos_ += n;
    return s;
  }
  std::vector<std::string> get_strings() {
    const auto n = get<uint32_t>();
    std::vector<std::string> v;
    for (uint32_t i = 0; i < n && !failed_; ++i) v.push_back(get_string());
    return v;
  }
  // A count of fixed-size items that must fit in what is left.
  uint32_t get_count(size_t item_size) {
    const auto n = get<uint32_t>();
    if (static_cast<size_t>(n) * item_size > in_.size() - pos_) failed_ = true;
    return failed_ ? 0 : n;
  }
  bool failed() const { return failed_; }
  bool at_end() const { return pos_ == in_.size(); }

 private:
  bool take(void* dst, size_t n) {
    if (failed_ || n > in_.size() - pos_) {
      failed_ = true;
      return false;
    }
    std::memcpy(dst, in_.data() + pos_, n);
    pos_ += n;
    return true;
  }
  const std::vector<char>& in_;
  size_t pos_ = 0;
  bool failed_ = false;
};

constexpr uint32_t kSpecMagic = 0x706c7370;    // "plsp"
constexpr uint32_t kAnswerMagic = 0x706c7361;  // "plsa"

// -1 stays -1; any other fd is appended to `fds` and named by its index there.
int32_t fd_index(int fd, std::vector<int>& fds) {
  if (fd < 0) return -1;
  fds.push_back(fd);
  return static_cast<int32_t>(fds.size() - 1);
}

}  // namespace

int send_record(int sock, const std::vector<char>& bytes, const std::vector<int>& fds) {
  if (fds.size() > kMaxRecordFds) return EMSGSIZE;
  iovec iov{const_cast<char*>(bytes.data()), bytes.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  std::vector<char> control;
  if (!fds.empty()) {
    control.resize(CMSG_SPACE(sizeof(int) * fds.size()));
    msg.msg_control = control.data();
    msg.msg_controllen = control.size();
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  }
  ssize_t n;
  do {
    n = ::sendmsg(sock, &msg, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return errno;
  return static_cast<size_t>(n) == bytes.size() ? 0 : EMSGSIZE;
}

int recv_record(int sock, size_t max_bytes, Record& out, bool nonblocking) {
  const int wait = nonblocking ? MSG_DONTWAIT : 0;
  out.fds.clear();
  // The record's length first (MSG_TRUNC reports it whole), so the buffer is sized to it, not
  // zero-filled to the largest a spec could be on every request. Without a control buffer the
  // peek takes no descriptor: they stay queued with the record.
  ssize_t len;
  do {
    len = ::recv(sock, nullptr, 0, MSG_PEEK | MSG_TRUNC | wait);
  } while (len < 0 && errno == EINTR);
  if (len < 0) return errno;
  out.bytes.resize(std::min(static_cast<size_t>(len), max_bytes + 1));  // one more: too long shows as MSG_TRUNC
  iovec iov{out.bytes.data(), out.bytes.size()};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxRecordFds)];
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t n;
  do {
    n = ::recvmsg(sock, &msg, MSG_CMSG_CLOEXEC | wait);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return errno;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
      out.fds.emplace_back(fd);
    }
  }
  if (n == 0 && out.fds.empty()) return EPIPE;
  if ((msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) != 0 || static_cast<size_t>(n) > max_bytes) {
    out.fds.clear();
    return EMSGSIZE;
  }
  out.bytes.resize(static_cast<size_t>(n));
  return 0;
}

std::vector<char> encode_spec(const SandboxSpec& spec, std::vector<int>& fds) {
  fds.clear();
  Writer w;
  w.put(kSpecMagic);
  w.put_string(spec.name);
  w.put_strings(spec.argv);
  w.put_strings(spec.env);
  w.put_string(spec.cwd);
  w.put(fd_index(spec.join_namespaces_of, fds));
  w.put(spec.uid_map);
  w.put(spec.gid_map);
  w.put(spec.uid);
  w.put(spec.gid);
  w.put_string(spec.rootfs.path);
  w.put(static_cast<uint8_t>(spec.rootfs.read_only));
  w.put_string(spec.rootfs.staging_dir);
  w.put_strings(spec.cgroup_procs_files);
  w.put(fd_index(spec.cgroup_dir_fd, fds));
  w.put(static_cast<uint32_t>(spec.rlimits.size()));
  for (const Rlimit& r : spec.rlimits) w.put(r);
  const bool has_filter = spec.seccomp != nullptr;
  w.put_string(has_filter ? spec.seccomp->source : std::string());
  w.put(static_cast<uint32_t>(has_filter ? spec.seccomp->program.size() : 0));
  if (has_filter) {
    for (const sock_filter& f : spec.seccomp->program) w.put(f);
  }
  w.put(static_cast<uint32_t>(spec.granted_fds.size()));
  for (int fd : spec.granted_fds) w.put(fd_index(fd, fds));
  return w.take();
}

std::optional<std::string> decode_spec(const Record& record, SandboxSpec& spec, CompiledFilter& filter) {
  Reader r(record.bytes);
  if (r.get<uint32_t>() != kSpecMagic) return "not a spawn request";
  bool bad_fd = false;
  auto fd_at = [&](int32_t index) {
    if (index == -1) return -1;
    if (index < 0 || static_cast<size_t>(index) >= record.fds.size()) {
      bad_fd = true;
      return -1;
    }
    return record.fds[static_cast<size_t>(index)].get();
  };
  spec = SandboxSpec{};
  spec.name = r.get_string();
  spec.argv = r.get_strings();
  spec.env = r.get_strings();
  spec.cwd = r.get_string();
  spec.join_namespaces_of = fd_at(r.get<int32_t>());
  spec.uid_map = r.get<IdMap>();
  spec.gid_map = r.get<IdMap>();
  spec.uid = r.get<uint32_t>();
  spec.gid = r.get<uint32_t>();
  spec.rootfs.path = r.get_string();
  spec.rootfs.read_only = r.get<uint8_t>() != 0;
  spec.rootfs.staging_dir = r.get_string();
  spec.cgroup_procs_files = r.get_strings();
  spec.cgroup_dir_fd = fd_at(r.get<int32_t>());
  const uint32_t n_rlimits = r.get_count(sizeof(Rlimit));
  for (uint32_t i = 0; i < n_rlimits; ++i) spec.rlimits.push_back(r.get<Rlimit>());
  filter = CompiledFilter{};
  filter.source = r.get_string();
  const uint32_t n_insns = r.get_count(sizeof(sock_filter));
  filter.program.reserve(n_insns);
  for (uint32_t i = 0; i < n_insns; ++i) filter.program.push_back(r.get<sock_filter>());
  spec.seccomp = &filter;
  const uint32_t n_granted = r.get_count(sizeof(int32_t));
  for (uint32_t i = 0; i < n_granted; ++i) {
    const int fd = fd_at(r.get<int32_t>());
    if (fd < 0) bad_fd = true;
    spec.granted_fds.push_back(fd);
  }
  if (r.failed() || !r.at_end()) return "a spawn request of the wrong length";
  if (bad_fd) return "a spawn request naming a descriptor it did not carry";
  return std::nullopt;
}

void encode_answer(const Answer& a, std::vector<char>& out) {
  out.clear();
  Writer w(out);
  w.put(kAnswerMagic);
  w.put(static_cast<uint8_t>(a.ok));
  w.put(a.pid);
  w.put(a.step);
  w.put(a.err);
  w.put_string(a.detail);
  w.put(a.reap);
  w.put(static_cast<uint8_t>(a.released));
}

std::optional<std::string> decode_answer(const std::vector<char>& bytes, Answer& a) {
  Reader r(bytes);
  if (r.get<uint32_t>() != kAnswerMagic) return "not a spawn answer";
  a.ok = r.get<uint8_t>() != 0;
  a.pid = r.get<int32_t>();
  a.step = r.get<uint8_t>();
  a.err = r.get<int32_t>();
  a.detail = r.get_string();
  a.reap = r.get<uint32_t>();
  a.released = r.get<uint8_t>() != 0;
  if (r.failed() || !r.at_end()) return "a spawn answer of the wrong length";
  return std::nullopt;
}

}  // namespace plume::fwp::detail
