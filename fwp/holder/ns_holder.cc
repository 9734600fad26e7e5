// plume-ns-holder: pid 1 of a tenant's shared namespaces (plume/fwp/tenant_namespaces.h). It runs
// nothing of the tenant's: it reaps what the kernel reparents to it, and it ends when its
// supervisor closes (or dies holding) the pipe on its fd 0, which ends every process left in the
// namespaces with it. Static: it runs in whatever root its sandbox has.
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

int main() {
  ::syscall(SYS_close_range, 3u, ~0u, 0u);  // the binary's own fd, granted for the exec
  // Same uid as the tenant's processes: only non-dumpability keeps ptrace, process_vm_* and
  // /proc/1/mem away from it.
  ::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  sigprocmask(SIG_BLOCK, &chld, nullptr);
  const int sfd = ::signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
  if (sfd < 0) return 125;
  for (;;) {
    pollfd fds[2] = {{0, POLLIN, 0}, {sfd, POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) continue;
    if (fds[0].revents != 0) {
      char c;
      if (::read(0, &c, 1) <= 0) return 0;  // the supervisor let go
    }
    if (fds[1].revents & POLLIN) {
      signalfd_siginfo si;
      while (::read(sfd, &si, sizeof si) == sizeof si) {
      }
      while (::waitpid(-1, nullptr, WNOHANG) > 0) {
      }
    }
  }
}
