// SCM_RIGHTS framing of wire::Msg records on a SOCK_SEQPACKET socket.
#include "template_wire.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace plume::fwp::wire {
namespace {
constexpr size_t kMaxFds = 4;  // received fds beyond the first are closed, never kept
}

int send_msg(int sock, const Msg& msg, int fd) {
  iovec iov{const_cast<Msg*>(&msg), sizeof msg};
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  if (fd >= 0) {
    mh.msg_control = control;
    mh.msg_controllen = sizeof control;
    cmsghdr* c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(c), &fd, sizeof fd);
  }
  for (;;) {
    const ssize_t n = ::sendmsg(sock, &mh, MSG_NOSIGNAL);
    if (n == static_cast<ssize_t>(sizeof msg)) return 0;
    if (n < 0 && errno == EINTR) continue;
    return n < 0 ? errno : EMSGSIZE;
  }
}

int recv_msg(int sock, Msg& msg, int* fd_out, bool nonblock) {
  if (fd_out != nullptr) *fd_out = -1;
  Msg tmp;
  iovec iov{&tmp, sizeof tmp};
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFds)] = {};
  mh.msg_control = control;
  mh.msg_controllen = sizeof control;
  ssize_t n;
  do {
    n = ::recvmsg(sock, &mh, MSG_CMSG_CLOEXEC | (nonblock ? MSG_DONTWAIT : 0));
  } while (n < 0 && errno == EINTR);
  if (n < 0) return errno;
  if (n == 0) return EPIPE;
  int first = -1;
  for (cmsghdr* c = CMSG_FIRSTHDR(&mh); c != nullptr; c = CMSG_NXTHDR(&mh, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
      if (first < 0) first = fd; else ::close(fd);
    }
  }
  const bool bad = n != static_cast<ssize_t>(sizeof tmp) || (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) ||
                   tmp.magic != kMagic || tmp.version != kVersion;
  if (bad) {
    if (first >= 0) ::close(first);
    return EBADMSG;
  }
  msg = tmp;
  if (fd_out != nullptr) *fd_out = first;
  else if (first >= 0) ::close(first);
  return 0;
}

}  // namespace plume::fwp::wire
