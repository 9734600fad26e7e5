// first_handler: the libplume app bench/fwp starts. Its handler's first act is a CLOCK_MONOTONIC
// read; it then receives the start message and replies with [8-byte timestamp][the message], so
// one reply serves both as "first instruction" evidence and as an echo round trip, and returns 0.
// Standalone (no PLUME_FWP_ROLE) the same handler runs on stdin/stdout: the fork+exec and
// posix_spawn churn peers start it that way.
//
// Two standalone helper modes give peers made from a process exactly as small as the template
// (the same static binary), so fork costs compare like for like:
//   first_handler fork-server   for each byte read on stdin: fork(); the child writes its clock
//                               (8 bytes) to stdout and _exits; the server reaps it, then writes
//                               its own clock (8 bytes) to stdout. EOF on stdin ends it.
//   first_handler wait-doorbell writes one byte to stdout, blocks in read() on stdin; on the
//                               doorbell byte its first act is a clock read, which it writes
//                               (8 bytes) to stdout before it _exits: a plain parked process, the
//                               floor of any doorbell start.
//   first_handler park N        forks N children that block in read() on a pipe nobody writes,
//                               writes their pids (binary pid_t each) to stdout, then blocks
//                               reading stdin; EOF there SIGKILLs the children and ends it.
#include <plume/plume.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace {

uint64_t now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000u + static_cast<uint64_t>(ts.tv_nsec);
}

bool write_all(int fd, const void* p, size_t n) {
  const char* c = static_cast<const char*>(p);
  while (n > 0) {
    const ssize_t w = write(fd, c, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    c += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

[[noreturn]] void fork_server() {
  char c = 0;
  while (read(0, &c, 1) == 1) {
    const pid_t pid = fork();
    if (pid == 0) {
      const uint64_t t = now_ns();  // the child's first act
      (void)write_all(1, &t, sizeof t);
      _exit(0);
    }
    if (pid < 0) _exit(2);
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    const uint64_t reaped = now_ns();
    if (!write_all(1, &reaped, sizeof reaped)) _exit(3);
  }
  _exit(0);
}

[[noreturn]] void wait_doorbell() {
  const char parked = 'p';
  if (!write_all(1, &parked, 1)) _exit(3);
  char c = 0;
  ssize_t n;
  do n = read(0, &c, 1); while (n < 0 && errno == EINTR);
  const uint64_t t = now_ns();  // the first act after the wake-up
  if (n != 1) _exit(2);
  _exit(write_all(1, &t, sizeof t) ? 0 : 3);
}

[[noreturn]] void park(int n) {
  int p[2];
  if (pipe(p) != 0) _exit(2);
  std::vector<pid_t> kids;
  for (int i = 0; i < n; ++i) {
    const pid_t pid = fork();
    if (pid == 0) {
      (void)prctl(PR_SET_PDEATHSIG, SIGKILL);
      close(0);  // the parent's stdin and stdout: their EOFs must not wait for the children
      close(1);
      char c;
      for (;;) (void)!read(p[0], &c, 1);  // never written: parked for good
    }
    if (pid < 0) break;
    kids.push_back(pid);
  }
  if (!write_all(1, kids.data(), kids.size() * sizeof(pid_t))) _exit(3);
  close(1);  // the reader sees EOF after the last pid
  char c;
  while (read(0, &c, 1) > 0) {
  }
  for (pid_t k : kids) kill(k, SIGKILL);
  for (pid_t k : kids) waitpid(k, nullptr, 0);
  _exit(0);
}

int init(int argc, char** argv) {
  if (argc >= 2 && std::strcmp(argv[1], "fork-server") == 0) fork_server();
  if (argc >= 2 && std::strcmp(argv[1], "wait-doorbell") == 0) wait_doorbell();
  if (argc >= 3 && std::strcmp(argv[1], "park") == 0) park(std::atoi(argv[2]));
  return 0;
}

int handle(plume_instance* self) {
  const uint64_t entered = now_ns();  // the handler's first instruction
  char buf[1024];
  std::memcpy(buf, &entered, sizeof entered);
  const long n = plume_recv(self, buf + sizeof entered, sizeof buf - sizeof entered, -1);
  if (n < 0) return 1;
  return plume_send(self, buf, sizeof entered + static_cast<size_t>(n)) == 0 ? 0 : 2;
}

}  // namespace

PLUME_APP(init, handle)
