// plume_liar: a libplume app whose template lies to the controller, for the hostile-template
// tests (hostile_template_test.cc). After init a template is tenant code: this one's init
// registers a fork handler (pthread_atfork, which any app may call) that runs in the template at
// every fork, after the child exists and before libplume answers the FORK, and sends the forged
// records that PLUME_LIAR names on the control socket:
//   template_exited  "the template died" (only its keeper may say so, and only once it has)
//   exited           "instance with pid N exited, code 0" for every pid 1..64 of its namespace
//   garbage          a record with the wrong magic, then one cut short
//   hello            a second hello, with the template's own pidfd
//   self             forked{id, pidfd of the template itself} for ids 1..64
//   sibling          forked{id, pidfd of its oldest live child} for ids 1..64, once it has two
// and one that misbehaves without lying:
//   init_fails_again init succeeds once per sandbox and fails ever after (a marker in the
//                    sandbox's own /tmp, which every template the keeper forks shares)
// Each instance echoes every message back and ends (code 0) on an empty one.
#include <fcntl.h>
#include <plume/plume.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>

#include "runtime.h"
#include "template_wire.h"

namespace {

using plume::fwp::wire::Msg;
using plume::fwp::wire::Type;
using plume::libplume::kControlFd;

constexpr uint64_t kIdsGuessed = 64;  // instance ids are per template, from 1
std::string g_lie;

int pidfd_of(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }

// The oldest of the template's live children (they are listed oldest first), if it has at least
// two: the one just forked and an older one.
pid_t oldest_of_two_or_more_children() {
  const std::string path = "/proc/self/task/" + std::to_string(::gettid()) + "/children";
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  char buf[512] = {};
  const ssize_t n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  if (n <= 0) return -1;
  char* end = nullptr;
  const long first = std::strtol(buf, &end, 10);
  return end != nullptr && std::strtol(end, nullptr, 10) > 0 ? static_cast<pid_t>(first) : -1;
}

void forge_forked(pid_t pid) {
  const int pidfd = pidfd_of(pid);
  if (pidfd < 0) return;
  for (uint64_t id = 1; id <= kIdsGuessed; ++id) {
    Msg m;
    m.type = Type::forked;
    m.instance_id = id;
    m.pid = pid;
    (void)plume::fwp::wire::send_msg(kControlFd, m, pidfd);
  }
  ::close(pidfd);
}

void lie() {
  if (g_lie == "template_exited") {
    Msg m;
    m.type = Type::template_exited;
    (void)plume::fwp::wire::send_msg(kControlFd, m);
  } else if (g_lie == "exited") {
    for (int32_t pid = 1; pid <= 64; ++pid) {
      Msg m;
      m.type = Type::exited;
      m.pid = pid;
      (void)plume::fwp::wire::send_msg(kControlFd, m);
    }
  } else if (g_lie == "garbage") {
    Msg m;
    m.type = Type::forked;
    m.magic = 0xdeadbeef;
    (void)::send(kControlFd, &m, sizeof m, MSG_NOSIGNAL);
    (void)::send(kControlFd, &m, 10, MSG_NOSIGNAL);
  } else if (g_lie == "hello") {
    const int pidfd = pidfd_of(::getpid());
    Msg m;
    m.type = Type::hello;
    m.pid = ::getpid();
    m.generation = 7;
    (void)plume::fwp::wire::send_msg(kControlFd, m, pidfd);
    ::close(pidfd);
  } else if (g_lie == "self") {
    forge_forked(::getpid());
  } else if (g_lie == "sibling") {
    if (const pid_t older = oldest_of_two_or_more_children(); older > 0) forge_forked(older);
  }
}

int init(int, char**) {
  if (const char* l = std::getenv("PLUME_LIAR")) g_lie = l;
  if (g_lie == "init_fails_again") {
    const int fd = ::open("/tmp/plume-liar-inited", O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
    if (fd < 0) return 3;
    ::close(fd);
  }
  // The child has nothing to forge: libplume closes the control socket in it.
  return pthread_atfork(nullptr, lie, nullptr);
}

int handle(plume_instance* self) {
  char buf[1024];
  for (;;) {
    const long n = plume_recv(self, buf, sizeof buf, -1);
    if (n == 0 || n == -EPIPE) return 0;
    if (n < 0) return 1;
    if (plume_send(self, buf, static_cast<size_t>(n)) != 0) return 1;
  }
}

}  // namespace

PLUME_APP(init, handle)
