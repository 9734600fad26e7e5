// A hostile worker: tries one thing that a sandboxed process must not be able to do and prints the
// outcome on stdout as "<what>: <errno name>" (or "<what>: OK" when it worked). Tests run it inside
// the containment pipeline and assert refusal. Linked statically, so it runs in a rootfs that holds
// nothing else; it uses only libc. It refuses to run unless it is pid 1 of a pid namespace.
//
//   hostile mount | ptrace | unshare_user | setns | kexec_load | bpf | raw_packet | raw_inet
//   hostile read <path> | kill <pid> | kill_all | forkbomb | memhog <MiB> | fds | block | exit <n>
//   hostile loopback   (not hostile: a UDP datagram to itself over 127.0.0.1 proves lo is up)
#include <dirent.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace {

// One write(2) per line: output arrives whole even if the process is killed right after.
__attribute__((format(printf, 1, 2))) void say(const char* fmt, ...) {
  char line[512];
  va_list ap;
  va_start(ap, fmt);
  const int n = std::vsnprintf(line, sizeof line - 1, fmt, ap);
  va_end(ap);
  if (n <= 0) return;
  size_t len = static_cast<size_t>(n) < sizeof line - 1 ? static_cast<size_t>(n) : sizeof line - 2;
  line[len++] = '\n';
  if (::write(STDOUT_FILENO, line, len) < 0) std::_Exit(2);
}

const char* outcome(long rc) { return rc < 0 ? strerrorname_np(errno) : "OK"; }

void report(const char* what, long rc) { say("%s: %s", what, outcome(rc)); }

int try_ptrace() {
  const pid_t child = ::fork();
  if (child < 0) {
    report("fork", -1);
    return 1;
  }
  if (child == 0) {
    ::pause();
    ::_exit(0);
  }
  const long rc = ::ptrace(PTRACE_ATTACH, child, nullptr, nullptr);
  report("ptrace", rc);
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  return 0;
}

int try_setns() {
  const int fd = ::open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    report("open ns", -1);
    return 1;
  }
  report("setns", ::setns(fd, CLONE_NEWNET));
  return 0;
}

int try_bpf() {
  union bpf_attr attr;
  std::memset(&attr, 0, sizeof attr);
  attr.map_type = BPF_MAP_TYPE_ARRAY;
  attr.key_size = 4;
  attr.value_size = 4;
  attr.max_entries = 1;
  report("bpf", ::syscall(SYS_bpf, BPF_MAP_CREATE, &attr, sizeof attr));
  return 0;
}

int try_kill(const char* pid_text) {
  const auto pid = static_cast<pid_t>(std::strtol(pid_text, nullptr, 10));
  report("kill", ::kill(pid, SIGKILL));
  return 0;
}

// Forks until the kernel says no; the children wait to be killed with the pid namespace.
int fork_bomb() {
  for (int i = 0; i < 4096; ++i) {
    const pid_t child = ::fork();
    if (child == 0) {
      ::pause();
      ::_exit(0);
    }
    if (child < 0) {
      say("fork: %s after %d", strerrorname_np(errno), i);
      return 0;
    }
  }
  say("fork: OK 4096 times");
  return 0;
}

// Touches memory 1 MiB at a time; the memory cgroup should OOM-kill it first.
int memory_hog(const char* mib_text) {
  const long mib = std::strtol(mib_text, nullptr, 10);
  constexpr size_t kChunk = size_t{1} << 20;
  for (long i = 0; i < mib; ++i) {
    void* p = ::mmap(nullptr, kChunk, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
      say("mmap: %s after %ld MiB", strerrorname_np(errno), i);
      return 1;
    }
    std::memset(p, 0x5a, kChunk);
  }
  say("memhog: survived %ld MiB", mib);
  return 0;
}

// Lists open fds, then prints what fds >= 3 hold (tests pass pipes with known contents).
int list_fds() {
  DIR* dir = ::opendir("/proc/self/fd");
  if (dir == nullptr) {
    report("opendir /proc/self/fd", -1);
    return 1;
  }
  const int own = ::dirfd(dir);
  int fds[64];
  int n = 0;
  while (dirent* e = ::readdir(dir)) {
    if (e->d_name[0] == '.') continue;
    const int fd = static_cast<int>(std::strtol(e->d_name, nullptr, 10));
    if (fd != own && n < 64) fds[n++] = fd;
  }
  ::closedir(dir);
  char line[400] = "fds:";
  for (int i = 0; i < n; ++i) {
    char num[16];
    std::snprintf(num, sizeof num, " %d", fds[i]);
    std::strncat(line, num, sizeof line - std::strlen(line) - 1);
  }
  say("%s", line);
  for (int i = 0; i < n; ++i) {
    if (fds[i] < 3) continue;
    char buf[33] = {};
    const ssize_t got = ::read(fds[i], buf, sizeof buf - 1);
    if (got > 0) say("fd%d=%s", fds[i], buf);
  }
  return 0;
}

int udp_to_self() {
  const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    report("socket AF_INET", -1);
    return 1;
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  auto* sa = reinterpret_cast<sockaddr*>(&addr);
  if (::bind(fd, sa, sizeof addr) != 0 || ::getsockname(fd, sa, &len) != 0) {
    report("bind 127.0.0.1", -1);
    return 1;
  }
  const timeval timeout{2, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  if (::sendto(fd, "ping", 4, 0, sa, sizeof addr) != 4) {
    report("loopback sendto", -1);
    return 1;
  }
  char buf[8] = {};
  const ssize_t got = ::recv(fd, buf, sizeof buf - 1, 0);
  report("loopback", got == 4 && std::strcmp(buf, "ping") == 0 ? 0 : -1);
  return 0;
}

// Prints "ready" and waits for stdin to close: keeps a live worker for tests that look at it.
int block() {
  say("ready");
  char buf[64];
  while (::read(STDIN_FILENO, buf, sizeof buf) > 0) {
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    say("usage: hostile <mode> [arg]");
    return 2;
  }
  // Only ever inside a sandbox: as pid 1 of its own pid namespace. Run on a host as root, modes
  // like "mount" or "kill_all" would do real damage.
  if (::getpid() != 1) {
    say("hostile: refusing to run outside a sandbox (pid %d is not 1)", static_cast<int>(::getpid()));
    return 3;
  }
  const char* mode = argv[1];
  const char* arg = argc > 2 ? argv[2] : "";
  if (std::strcmp(mode, "mount") == 0) {
    report("mount", ::mount("none", "/tmp", "tmpfs", 0, nullptr));
  } else if (std::strcmp(mode, "ptrace") == 0) {
    return try_ptrace();
  } else if (std::strcmp(mode, "unshare_user") == 0) {
    report("unshare", ::unshare(CLONE_NEWUSER));
  } else if (std::strcmp(mode, "setns") == 0) {
    return try_setns();
  } else if (std::strcmp(mode, "kexec_load") == 0) {
    report("kexec_load", ::syscall(SYS_kexec_load, 0UL, 0UL, nullptr, 0UL));
  } else if (std::strcmp(mode, "bpf") == 0) {
    return try_bpf();
  } else if (std::strcmp(mode, "raw_packet") == 0) {
    report("socket AF_PACKET", ::socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL)));
  } else if (std::strcmp(mode, "raw_inet") == 0) {
    report("socket AF_INET SOCK_RAW", ::socket(AF_INET, SOCK_RAW, IPPROTO_ICMP));
  } else if (std::strcmp(mode, "read") == 0) {
    report("read", ::open(arg, O_RDONLY | O_CLOEXEC));
  } else if (std::strcmp(mode, "kill") == 0) {
    return try_kill(arg);
  } else if (std::strcmp(mode, "kill_all") == 0) {
    report("kill -1", ::kill(-1, SIGKILL));
  } else if (std::strcmp(mode, "forkbomb") == 0) {
    return fork_bomb();
  } else if (std::strcmp(mode, "memhog") == 0) {
    return memory_hog(arg);
  } else if (std::strcmp(mode, "fds") == 0) {
    return list_fds();
  } else if (std::strcmp(mode, "loopback") == 0) {
    return udp_to_self();
  } else if (std::strcmp(mode, "block") == 0) {
    return block();
  } else if (std::strcmp(mode, "exit") == 0) {
    return static_cast<int>(std::strtol(arg, nullptr, 10));
  } else {
    say("unknown mode %s", mode);
    return 2;
  }
  return 0;
}
