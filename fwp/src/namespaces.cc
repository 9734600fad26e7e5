#include "namespaces.h"

#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>

namespace plume::fwp::detail {

StepFailure wait_for_release(int sync_fd) {
  char byte = 0;
  for (;;) {
    const ssize_t n = ::read(sync_fd, &byte, 1);
    if (n == 1) return step_ok();
    if (n == 0) return StepFailure{EPIPE, "read", "release pipe (parent gone)"};
    if (errno != EINTR) return step_errno("read", "release pipe");
  }
}

StepFailure join_namespaces(int pidfd) {
  if (::setns(pidfd, CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS) != 0)
    return step_errno("setns", "the holder's user, pid, net, ipc and uts namespaces");
  if (::unshare(CLONE_NEWNS) != 0) return step_errno("unshare", "CLONE_NEWNS");
  return step_ok();
}

StepFailure enter_cgroup_namespace() {
  if (::unshare(CLONE_NEWCGROUP) != 0) return step_errno("unshare", "CLONE_NEWCGROUP");
  return step_ok();
}

StepFailure arm_parent_death(int sync_fd) {
  if (::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0) return step_errno("prctl PR_SET_PDEATHSIG");
  pollfd pfd{sync_fd, POLLIN, 0};
  int n;
  do {
    n = ::poll(&pfd, 1, 0);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return step_errno("poll", "release pipe");
  if (n > 0 && (pfd.revents & (POLLHUP | POLLERR)) != 0) {
    return StepFailure{EPIPE, "poll", "release pipe (parent gone)"};
  }
  return step_ok();
}

StepFailure bring_up_loopback() {
  const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return step_errno("socket", "AF_INET");
  ifreq ifr{};
  std::memcpy(ifr.ifr_name, "lo", 3);
  if (::ioctl(fd, SIOCGIFFLAGS, &ifr) != 0) {
    const StepFailure f = step_errno("ioctl SIOCGIFFLAGS", "lo");
    ::close(fd);
    return f;
  }
  ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP | IFF_RUNNING);
  if (::ioctl(fd, SIOCSIFFLAGS, &ifr) != 0) {
    const StepFailure f = step_errno("ioctl SIOCSIFFLAGS", "lo");
    ::close(fd);
    return f;
  }
  ::close(fd);
  return step_ok();
}

StepFailure set_hostname(const char* name, size_t len) {
  if (::sethostname(name, len) != 0) return step_errno("sethostname", name);
  return step_ok();
}

}  // namespace plume::fwp::detail
