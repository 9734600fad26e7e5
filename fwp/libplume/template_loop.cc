// The template: runs the app's init once, then forks instances on the controller's request.
// Instances are the template's children (plain fork(), so glibc's own state stays right): the
// template reaps them and reports their exits; when it dies they are reparented to the keeper,
// keep running, and the keeper reports them instead.
#include <malloc.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "instance_scope.h"
#include "prefault.h"
#include "runtime.h"
#include "staged_channels.h"
#include "template_wire.h"

namespace plume::libplume {
namespace {

// Threads left behind by init would be lost in every fork (and could watch the fds passing
// through the template): init must return single-threaded.
int thread_count() {
  FILE* f = std::fopen("/proc/self/status", "r");
  if (f == nullptr) return -1;
  char line[256];
  int threads = -1;
  while (std::fgets(line, sizeof line, f) != nullptr) {
    if (std::strncmp(line, "Threads:", 8) == 0) threads = std::atoi(line + 8);
  }
  std::fclose(f);
  return threads;
}

}  // namespace

uint64_t timeval_ns(const timeval& tv) {
  return static_cast<uint64_t>(tv.tv_sec) * 1000000000u + static_cast<uint64_t>(tv.tv_usec) * 1000u;
}

bool reap_children(int sfd, pid_t tmpl, uint32_t generation) {
  bool template_died = false;
  signalfd_siginfo si;
  while (::read(sfd, &si, sizeof si) == sizeof si) {
  }
  for (;;) {
    int status = 0;
    rusage ru{};
    const pid_t pid = ::wait4(-1, &status, WNOHANG, &ru);
    if (pid <= 0) return template_died;
    fwp::wire::Msg m;
    m.type = fwp::wire::Type::exited;
    if (pid == tmpl) {
      m.type = fwp::wire::Type::template_exited;
      m.generation = generation;
      template_died = true;
    }
    m.pid = pid;
    m.wait_status = status;
    m.utime_ns = timeval_ns(ru.ru_utime);
    m.stime_ns = timeval_ns(ru.ru_stime);
    m.maxrss_kb = static_cast<uint64_t>(ru.ru_maxrss);
    (void)fwp::wire::send_msg(kControlFd, m);
  }
}

void run_template(int argc, char** argv, const plume_app& app, const fwp::wire::Msg& config,
                  uint32_t generation) {
  using fwp::wire::Msg;
  using fwp::wire::Type;
  const uint64_t t0 = now_ns();
  if (app.init != nullptr) {
    if (int rc = app.init(argc, argv); rc != 0) {
      diag("template: app init failed", 0);
      _exit(rc);
    }
  }
  if (thread_count() != 1) {
    diag("template: init must not leave threads behind", 0);
    _exit(126);
  }
  // Not dumpable (the keeper is not either; this holds it whatever forked us): instances inherit
  // it through fork(), so no sibling of the same uid can read or trace them (or this template).
  if (::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) {
    diag("template: PR_SET_DUMPABLE", errno);
    _exit(126);
  }
  ::malloc_trim(0);  // fork cost grows with the mappings kept: give back init's garbage
  // prefault.h; PLUME_NO_SHARE_TEXT is for A/B runs
  const int on_huge_pages = std::getenv("PLUME_NO_SHARE_TEXT") == nullptr
                                ? share_text_with_children((config.flags & fwp::wire::kFlagHugeText) != 0)
                                : 0;
  Msg hello;
  hello.type = Type::hello;
  if (on_huge_pages > 0) hello.flags |= fwp::wire::kFlagHugeText;  // the controller says whether it took
  hello.pid = ::getpid();
  hello.generation = generation;
  hello.init_ns = now_ns() - t0;
  const int self_pidfd = static_cast<int>(::syscall(SYS_pidfd_open, ::getpid(), 0));
  if (self_pidfd < 0) {
    diag("template: pidfd_open self", errno);
    _exit(126);
  }
  if (int err = fwp::wire::send_msg(kControlFd, hello, self_pidfd); err != 0) _exit(126);
  ::close(self_pidfd);
  // Forks (pool refills above all) are background work: below the instances they serve, if
  // instances can come back to nice 0 (RLIMIT_NICE 20).
  rlimit nice_limit{};
  if (config.template_nice > 0 && ::getrlimit(RLIMIT_NICE, &nice_limit) == 0 && nice_limit.rlim_cur >= 20)
    (void)::setpriority(PRIO_PROCESS, 0, config.template_nice);

  // Instances enter a Landlock domain of their own if the controller asked and the kernel can;
  // otherwise they load the per-instance seccomp filter (the flag says whether that is wanted).
  int scope_fd = -1;
  // Never for an image with rings: only the filter refuses an instance more io_uring_setup calls.
  if ((config.flags & fwp::wire::kFlagInstanceLandlock) && config.ring_entries == 0) {
    scope_fd = make_instance_scope_ruleset();
    if (scope_fd < 0) {
      diag("template: no Landlock scopes here, instances use the seccomp filter", -scope_fd);
      scope_fd = -1;
    }
  }

  // PLUME_FWP_TRACE: each fork's cost and the template's own page faults between forks (each
  // page it writes after a fork is a copy-on-write fault, ~20-40 µs in a paravirtualised guest).
  const bool trace = std::getenv("PLUME_FWP_TRACE") != nullptr;
  long last_minflt = 0;
  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  sigprocmask(SIG_BLOCK, &chld, nullptr);
  const int sfd = ::signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
  if (sfd < 0) {
    diag("template: signalfd", errno);
    _exit(126);
  }
  // Static, not on this frame: 2 KiB more of stack here would push every child's stack that
  // much deeper, onto pages it then owns privately (+3 KiB PSS per parked instance, measured).
  static StagedChannels staged(fwp::ChannelGeometry{config.slots, config.slot_size, 0});
  for (;;) {
    pollfd fds[2] = {{kControlFd, POLLIN, 0}, {sfd, POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) continue;
    if (fds[1].revents & POLLIN) (void)reap_children(sfd, 0, 0);
    if (!(fds[0].revents & (POLLIN | POLLHUP))) continue;
    Msg msg;
    // A STAGE's memfd, or a FORK's stdout and stderr (the instance's own, when the controller
    // captures them); -1 where absent.
    int fds_in[3] = {-1, -1, -1};
    const int err = fwp::wire::recv_msg(kControlFd, msg, &fds_in[0], true, &fds_in[1], 2);
    if (err == EPIPE) _exit(0);  // the controller is gone
    if (err != 0) continue;      // a malformed record: ignore it
    auto close_fds = [&] {
      for (int& f : fds_in) {
        if (f >= 0) ::close(f);
        f = -1;
      }
    };
    if (msg.type == Type::stage && fds_in[0] >= 0) {
      (void)staged.add(msg.channel, fds_in[0]);
      fds_in[0] = -1;
      close_fds();
      continue;
    }
    if (msg.type == Type::unstage) staged.remove(msg.channel);
    if (msg.type != Type::fork) {
      close_fds();
      continue;
    }
    const int output[2] = {fds_in[0], fds_in[1]};
    const int memfd = staged.fd_of(msg.channel);
    void* const premapped = msg.channel == staged.premapped_serial() ? staged.premapped() : nullptr;
    const uint64_t forked_at = now_ns();
    // fork(), not _Fork(): the atfork work it adds costs a few copy-on-write faults, but it is
    // what reseeds random state in the child (glibc's arc4random, OpenSSL's DRBG): skipping it
    // would hand sibling instances the same random numbers.
    const pid_t pid = memfd >= 0 ? ::fork() : -1;
    if (pid == 0) {
      // Both or neither: an instance writes where the template writes unless it has its own.
      if (output[0] >= 0 && output[1] >= 0) {
        if (::dup2(output[0], 1) < 0 || ::dup2(output[1], 2) < 0) _exit(125);
      }
      const ParkMode park = (msg.flags & fwp::wire::kFlagForPool) == 0 ? ParkMode::none
                            : (msg.flags & fwp::wire::kFlagSpinWhileParked) != 0 ? ParkMode::spinning
                                                                                  : ParkMode::asleep;
      // Another instance's channel, premapped for the FORK after this one, is not this one's.
      if (premapped == nullptr) staged.unmap_premapped_in_child();
      const int cpu = (msg.flags & fwp::wire::kFlagParkOnCpu) != 0 ? msg.park_cpu : -1;
      run_instance(app, config, msg.instance_id, InstanceChannel{memfd, premapped},
                   FromTemplate{scope_fd, trace}, Parking{park, cpu}, forked_at);
    }
    // A child forked for a start usually lands on this CPU and would wait until the template
    // blocks, i.e. through pidfd_open, the reply and the template's own copy-on-write faults
    // (~200 µs here). Where its first message is queued already, nothing needs the reply
    // first: let the child run. (With own cgroups the message waits for the reply; a refill
    // is background work.)
    if (pid > 0 && (msg.flags & fwp::wire::kFlagMessageQueued) != 0) ::sched_yield();
    Msg reply;
    reply.type = Type::forked;
    reply.instance_id = msg.instance_id;
    const int pidfd = pid > 0 ? static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)) : -1;
    if (memfd < 0) {
      reply.err = EBADF;  // no such staged channel
      (void)fwp::wire::send_msg(kControlFd, reply);
    } else if (pid < 0 || pidfd < 0) {
      reply.err = errno;
      if (pid > 0) ::kill(pid, SIGKILL);
      (void)fwp::wire::send_msg(kControlFd, reply);
    } else {
      reply.pid = static_cast<int32_t>(pid);
      (void)fwp::wire::send_msg(kControlFd, reply, pidfd);
      ::close(pidfd);
    }
    if (trace) {
      rusage after{};
      ::getrusage(RUSAGE_SELF, &after);
      std::fprintf(stderr, "libplume: template fork() %.1f us, %ld page faults in the template since the last fork\n",
                   static_cast<double>(now_ns() - forked_at) / 1e3, after.ru_minflt - last_minflt);
      last_minflt = after.ru_minflt;
    }
    // Used or not, a FORK consumes its channel; the next one is premapped now, off the start path.
    staged.remove(msg.channel);
    close_fds();
  }
}

}  // namespace plume::libplume
