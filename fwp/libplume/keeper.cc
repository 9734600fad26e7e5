// The keeper: the process plumed spawns for a template, pid 1 of the template's pid namespace.
// It never runs app code. It forks the template (which runs init), reaps every process of the
// namespace that reaches it, reports each exit to the controller, and on the controller's
// request replaces a dead template. If the keeper died the kernel would kill the namespace, so it does nothing that could fail after start-up. Instances are the
// template's children; those a dead template leaves behind are reparented here and reaped here.
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <alloca.h>
#include <cerrno>
#include <cstdint>

#include "runtime.h"
#include "template_wire.h"

namespace plume::libplume {
namespace {

using fwp::wire::Msg;
using fwp::wire::Type;


pid_t fork_template(int argc, char** argv, const plume_app& app, const Msg& config,
                    uint32_t generation, const sigset_t& old_mask, int keeper_signalfd) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    sigprocmask(SIG_SETMASK, &old_mask, nullptr);
    // The keeper's, not the template's: the app's init would see it, and every instance would
    // close it again.
    ::close(keeper_signalfd);
    // Each stack page an instance writes between fork() and its handler costs it a page fault
    // (copy-on-write). Start the template's frames just below a page boundary, so that the
    // template loop's frame, fork()'s, run_instance's and a small handler's fit in the one page.
    char here;
    const auto offset_in_page = reinterpret_cast<uintptr_t>(&here) & (static_cast<uintptr_t>(::getpagesize()) - 1);
    volatile char* pad = static_cast<char*>(alloca(offset_in_page + 128));
    pad[0] = 0;  // used, so the compiler keeps it
    run_template(argc, argv, app, config, generation);
  }
  return pid;
}

}  // namespace

void run_keeper(int argc, char** argv, const plume_app& app) {
  // What the pipeline granted beyond stdio and the control socket (the binary's fd, when the
  // controller exec'd it through one) is not for the app.
  ::syscall(SYS_close_range, kControlFd + 1u, ~0u, 0u);
  ::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
  if (::getpid() != 1) ::prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);  // run outside a pid ns

  Msg config;
  if (int err = fwp::wire::recv_msg(kControlFd, config, nullptr); err != 0 || config.type != Type::config) {
    // A record this libplume cannot read (EBADMSG: another size, magic or version) comes from a
    // plumed whose libplume is another version than the one the app was linked with.
    static_assert(fwp::wire::kVersion == 4, "say the new version below");
    if (err == EBADMSG)
      diag("keeper: the controller's config is not control protocol version 4 (this app's "
           "libplume): rebuild the app against the plumed it runs under", 0);
    else
      diag("keeper: no config from the controller", err);
    _exit(125);
  }
  sigset_t chld, old_mask;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  sigprocmask(SIG_BLOCK, &chld, &old_mask);
  const int sfd = ::signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
  if (sfd < 0) {
    diag("keeper: signalfd", errno);
    _exit(125);
  }
  uint32_t generation = 1;
  pid_t tmpl = fork_template(argc, argv, app, config, generation, old_mask, sfd);
  if (tmpl < 0) {
    diag("keeper: fork template", errno);
    _exit(125);
  }
  for (;;) {
    // While a template lives it alone reads the control socket; without one the keeper does.
    pollfd fds[2] = {{sfd, POLLIN, 0}, {kControlFd, POLLIN, 0}};
    const int n = ::poll(fds, tmpl > 0 ? 1 : 2, -1);
    if (n < 0) continue;
    if (fds[0].revents & POLLIN) {
      if (reap_children(sfd, tmpl, generation)) tmpl = -1;
    }
    if (tmpl < 0 && (fds[1].revents & (POLLIN | POLLHUP))) {
      Msg m;
      int fd = -1;
      const int err = fwp::wire::recv_msg(kControlFd, m, &fd, true);
      if (fd >= 0) ::close(fd);
      if (err == EPIPE) _exit(0);
      if (err != 0) continue;
      if (m.type == Type::restart) {
        tmpl = fork_template(argc, argv, app, config, ++generation, old_mask, sfd);
      } else if (m.type == Type::fork) {
        Msg reply;  // a fork that reached no template: the controller retries after hello
        reply.type = Type::forked;
        reply.instance_id = m.instance_id;
        reply.err = EAGAIN;
        (void)fwp::wire::send_msg(kControlFd, reply);
      }
    }
  }
}

}  // namespace plume::libplume
