// SCM_RIGHTS framing of wire::Msg records on a SOCK_SEQPACKET socket.
#include "template_wire.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace plume::fwp::wire {
namespace {
constexpr int kMaxFds = 4;  // received fds beyond those asked for are closed, never kept
}

int send_msg(int sock, const Msg& msg, int fd, int fd2, int fd3) {
  iovec iov{const_cast<Msg*>(&msg), sizeof msg};
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  const int all[kMaxRecordFds] = {fd, fd2, fd3};
  int nfds = 0;
  while (nfds < kMaxRecordFds && all[nfds] >= 0) ++nfds;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxRecordFds)] = {};
  if (nfds > 0) {
    mh.msg_control = control;
    mh.msg_controllen = CMSG_SPACE(sizeof(int) * static_cast<size_t>(nfds));
    cmsghdr* c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * static_cast<size_t>(nfds));
    std::memcpy(CMSG_DATA(c), all, sizeof(int) * static_cast<size_t>(nfds));
  }
  for (;;) {
    const ssize_t n = ::sendmsg(sock, &mh, MSG_NOSIGNAL);
    if (n == static_cast<ssize_t>(sizeof msg)) return 0;
    if (n < 0 && errno == EINTR) continue;
    return n < 0 ? errno : EMSGSIZE;
  }
}

int recv_msg(int sock, Msg& msg, int* fd_out, bool nonblock, int* more_fds, int n_more) {
  if (fd_out != nullptr) *fd_out = -1;
  for (int i = 0; i < n_more; ++i) more_fds[i] = -1;
  Msg tmp;
  iovec iov{&tmp, sizeof tmp};
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * static_cast<size_t>(kMaxFds))] = {};
  mh.msg_control = control;
  mh.msg_controllen = sizeof control;
  ssize_t n;
  do {
    n = ::recvmsg(sock, &mh, MSG_CMSG_CLOEXEC | (nonblock ? MSG_DONTWAIT : 0));
  } while (n < 0 && errno == EINTR);
  if (n < 0) return errno;
  if (n == 0) return EPIPE;
  // Kept: the first 1 + n_more fds (fewer if fd_out/more_fds are absent); the rest are closed.
  int keep = fd_out == nullptr ? 0 : 1 + (more_fds == nullptr ? 0 : n_more);
  if (keep > kMaxFds) keep = kMaxFds;
  int kept[kMaxFds] = {};
  int nkept = 0;
  for (cmsghdr* c = CMSG_FIRSTHDR(&mh); c != nullptr; c = CMSG_NXTHDR(&mh, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
      if (nkept < keep) kept[nkept++] = fd; else ::close(fd);
    }
  }
  const bool bad = n != static_cast<ssize_t>(sizeof tmp) || (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) ||
                   tmp.magic != kMagic || tmp.version != kVersion;
  if (bad) {
    for (int i = 0; i < nkept; ++i) ::close(kept[i]);
    return EBADMSG;
  }
  msg = tmp;
  if (nkept > 0) *fd_out = kept[0];
  for (int i = 1; i < nkept; ++i) more_fds[i - 1] = kept[i];
  return 0;
}

}  // namespace plume::fwp::wire
