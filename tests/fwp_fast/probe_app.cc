// plume_probe: a libplume app the fwp_fast tests and the latency tool drive. Each message is a
// command; the reply is text. The handler's first act is to read the clock, so a start's latency
// can be measured to the handler's first instruction. Commands:
//   t0             → "<ns> <ns>": CLOCK_MONOTONIC at the handler's entry, and when the template
//                    began forking this instance
//   text           → "huge_kb=<n> file=<0|1>": the mapping holding its code, from /proc/self/smaps
//   faults         → "minflt=<n>": the page faults it had taken when its handler began (since
//                    fork(), for a forked instance)
//   status         → /proc/self/status security lines, namespaces, memory (v1) and unified (v2) cgroups
//   fds            → the open fds, "0,1,2"
//   init_fd        → the descriptor init left open (200; -1 if it could not): "fds" must not show it
//   maps           → how many of its mappings are of a Plume channel memfd
//   ids            → "pid=<pid> ppid=<ppid> init_pid=<pid that ran init> init_count=<n> nice=<n>
//                    policy=<n> cpus=<the CPUs it may run on, e.g. 0,1>"
//   attack <pid>   → errno of process_vm_readv, ptrace attach, kill(pid, 0), open /proc/pid/mem
//   uring          → results of a NOP and an OPENAT on plume_ring(), and errno of io_uring_setup
//   burn <ms>      → "burnt" after using <ms> ms of CPU time (busy)
//   touch <MiB>    → "touched" after writing <MiB> MiB of fresh memory, which it keeps
//   ring <ms>      → "rang <n>": for <ms> ms it futex-wakes the doorbell plumed waits on for its
//                    replies, sending nothing (a hostile instance making plumed spin)
//   ring-space <ms> → "rang <n>": the same with the space bell of its inbound ring, which plumed
//                    waits on while a request waits for room in its channel (rung, never read)
//   scribble       → moves its outbound ring's producer index 1000 slots ahead, rings, and waits:
//                    a channel that lies (plumed must kill it, and nothing else)
//   flood <n>      → sends "f0" … "f<n-1>" as fast as its channel takes them, then
//                    "flooded cpu_ns=<c> wall_ns=<w>": the CPU it used and the time it took (an
//                    instance that outpaces plumed waits for room, asleep, not spinning)
//   burst <n>      → sends "b0" … "b<n-1>" with plume_send_timeout(…, 0), which gives up at once
//                    on a full channel: "burst sent=<k> first_full=<i>" (i: the first that found it
//                    full, -1 if none; each that did is not sent)
//   exit <n>       → the instance ends with code n
//   segv           → it crashes
//   oom            → it allocates until the OOM killer ends it
//   ""             → it ends with code 0
// Standalone: `plume_probe bare-fork N` prints the median ns from fork() to the child's first
// instruction (a process exactly as small as the template); `plume_probe fork-exec N PATH` the
// same for fork+execve of PATH (apps/first_instruction, which writes its clock to fd 3);
// `plume_probe wake N [idle_us]` from a futex wake to the sleeper's first instruction (a doorbell's floor).
#include <fcntl.h>
#include <sched.h>
#include <liburing.h>
#include <plume/plume.h>
#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <string>
#include <vector>

namespace {

int g_init_count = 0;
pid_t g_init_pid = 0;
// A descriptor init leaves open, far above the template's own: no instance may inherit it.
int g_init_fd = -1;

uint64_t now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000u + static_cast<uint64_t>(ts.tv_nsec);
}

std::string read_file(const char* path) {
  std::string out;
  const int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return out;
  char buf[4096];
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  close(fd);
  return out;
}

std::string status() {
  std::string out;
  const std::string st = read_file("/proc/self/status");
  for (const char* key : {"Seccomp:", "NoNewPrivs:", "CapEff:", "CapPrm:", "CapBnd:", "CapAmb:"}) {
    const size_t at = st.find(std::string("\n") + key);
    if (at == std::string::npos) continue;
    const size_t end = st.find('\n', at + 1);
    std::string line = st.substr(at + 1, end - at - 1);
    line.erase(std::remove(line.begin(), line.end(), '\t'), line.end());
    out += line + "\n";
  }
  for (const char* ns : {"pid", "mnt", "user", "net", "uts", "ipc"}) {
    char link[64], target[128] = {};
    std::snprintf(link, sizeof link, "/proc/self/ns/%s", ns);
    const ssize_t n = readlink(link, target, sizeof target - 1);
    out += std::string("ns_") + ns + ":" + (n > 0 ? target : "?") + "\n";
  }
  const std::string cg = read_file("/proc/self/cgroup");
  for (size_t at = 0; at < cg.size();) {
    const size_t end = cg.find('\n', at);
    const std::string line = cg.substr(at, end - at);
    // "ID:CONTROLLERS:PATH": the memory controller's line on cgroup v1, "0::PATH" on v2.
    const size_t first = line.find(':');
    const size_t path_at = first == std::string::npos ? first : line.find(':', first + 1);
    if (path_at != std::string::npos) {
      const std::string path = line.substr(path_at + 1);
      if (line.find(":memory:") != std::string::npos) out += "cgroup_memory:" + path + "\n";
      if (line.rfind("0::", 0) == 0) out += "cgroup_unified:" + path + "\n";
    }
    if (end == std::string::npos) break;
    at = end + 1;
  }
  return out;
}

std::string channel_mappings() {
  const std::string maps = read_file("/proc/self/maps");
  int n = 0;
  for (size_t at = maps.find("plume-channel"); at != std::string::npos;
       at = maps.find("plume-channel", at + 1))
    ++n;
  return std::to_string(n);
}

// Its own channel's control words for the instance → supervisor ring (fwp/src/channel_layout.h:
// a 128-byte header holding slots at 12 and slot_size at 16, then per ring four 128-byte control
// lines, producer index, consumer index, doorbell, space bell, and the slots), found by the memfd's name.
struct OutboundRing {
  uint32_t* producer = nullptr;
  uint32_t* doorbell = nullptr;
  uint32_t* inbound_space_bell = nullptr;  // ring 0's: plumed produces there, and waits on it for room
};
OutboundRing outbound_ring() {
  const std::string maps = read_file("/proc/self/maps");
  const size_t at = maps.find("plume-channel");
  if (at == std::string::npos) return {};
  const size_t line = maps.rfind('\n', at);
  auto* base = reinterpret_cast<unsigned char*>(std::strtoull(maps.c_str() + (line == std::string::npos ? 0 : line + 1), nullptr, 16));
  uint32_t slots = 0, slot_size = 0;
  std::memcpy(&slots, base + 12, 4);
  std::memcpy(&slot_size, base + 16, 4);
  unsigned char* ring1 = base + 128 + 4 * 128 + size_t{slots} * slot_size;
  return {reinterpret_cast<uint32_t*>(ring1), reinterpret_cast<uint32_t*>(ring1 + 256),
          reinterpret_cast<uint32_t*>(base + 128 + 3 * 128)};
}

void futex_wake(uint32_t* word) { syscall(SYS_futex, word, FUTEX_WAKE, 1, nullptr, nullptr, 0); }

// Rings `which` bell for `ms` ms as a peer would ring it (rung, then woken), never with cause.
std::string ring_for(int ms, uint32_t* OutboundRing::*which) {
  const OutboundRing ring = outbound_ring();
  uint32_t* bell = ring.*which;
  if (!bell) return "no channel";
  const uint64_t end = now_ns() + static_cast<uint64_t>(ms) * 1000000u;
  uint64_t n = 0;
  while (now_ns() < end) {
    __atomic_store_n(bell, 2u, __ATOMIC_SEQ_CST);
    futex_wake(bell);
    ++n;
  }
  return "rang " + std::to_string(n);
}

int handle(plume_instance* self);

// The mapping that holds this app's code, from /proc/self/smaps: "huge_kb=<AnonHugePages>
// file=<1 if file-backed, else 0>".
std::string text_mapping() {
  const std::string smaps = read_file("/proc/self/smaps");
  const auto code = reinterpret_cast<uintptr_t>(&handle);
  bool inside = false;
  std::string out = "?";
  for (size_t at = 0; at < smaps.size();) {
    const size_t eol = std::min(smaps.find('\n', at), smaps.size());
    const std::string line = smaps.substr(at, eol - at);
    at = eol + 1;
    unsigned long from = 0, to = 0, inode = 0;
    char perms[5] = {};
    if (std::sscanf(line.c_str(), "%lx-%lx %4s %*s %*s %lu", &from, &to, perms, &inode) == 4) {
      inside = from <= code && code < to;
      if (inside) out = "file=" + std::string(inode != 0 ? "1" : "0");
    } else if (inside && line.rfind("AnonHugePages:", 0) == 0) {
      return "huge_kb=" + std::to_string(std::strtoul(line.c_str() + 14, nullptr, 10)) + " " + out;
    }
  }
  return out;
}

std::string fds() {
  std::vector<int> list;
  DIR* d = opendir("/proc/self/fd");
  if (d == nullptr) return "?";
  const int own = dirfd(d);
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] == '.') continue;
    const int fd = std::atoi(e->d_name);
    if (fd != own) list.push_back(fd);
  }
  closedir(d);
  std::sort(list.begin(), list.end());
  std::string out;
  for (int fd : list) out += (out.empty() ? "" : ",") + std::to_string(fd);
  return out;
}

std::string attack(pid_t pid) {
  char buf[16];
  iovec local{buf, sizeof buf}, remote{reinterpret_cast<void*>(0x400000), sizeof buf};
  const int vm = process_vm_readv(pid, &local, 1, &remote, 1, 0) < 0 ? errno : 0;
  const int pt = ptrace(PTRACE_ATTACH, pid, nullptr, nullptr) < 0 ? errno : 0;
  const int kl = kill(pid, 0) < 0 ? errno : 0;
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/mem", pid);
  const int fd = open(path, O_RDONLY | O_CLOEXEC);
  const int mem = fd < 0 ? errno : 0;
  if (fd >= 0) close(fd);
  return "vm=" + std::to_string(vm) + " ptrace=" + std::to_string(pt) + " kill=" + std::to_string(kl) +
         " mem=" + std::to_string(mem);
}

std::string uring(plume_instance* self) {
  io_uring* ring = plume_ring(self);
  if (ring == nullptr) return "ring=0";
  auto one = [&](auto prep) {
    io_uring_sqe* sqe = io_uring_get_sqe(ring);
    prep(sqe);
    io_uring_submit(ring);
    io_uring_cqe* cqe = nullptr;
    if (io_uring_wait_cqe(ring, &cqe) != 0) return -9999;
    const int res = cqe->res;
    io_uring_cqe_seen(ring, cqe);
    return res;
  };
  const int nop = one([](io_uring_sqe* s) { io_uring_prep_nop(s); });
  const int openat = one([](io_uring_sqe* s) { io_uring_prep_openat(s, AT_FDCWD, "/etc/hostname", O_RDONLY, 0); });
  io_uring_params p{};
  const long fd = syscall(SYS_io_uring_setup, 4, &p);
  const int setup = fd < 0 ? errno : 0;
  return "ring=1 nop=" + std::to_string(nop) + " openat=" + std::to_string(openat) +
         " setup=" + std::to_string(setup);
}

int64_t clock_ns(clockid_t clock) {
  timespec t{};
  clock_gettime(clock, &t);
  return t.tv_sec * 1000000000LL + t.tv_nsec;
}

// Returns the closing reply, or "" when a send failed.
std::string flood(plume_instance* self, int n) {
  const int64_t cpu0 = clock_ns(CLOCK_PROCESS_CPUTIME_ID), wall0 = clock_ns(CLOCK_MONOTONIC);
  for (int i = 0; i < n; ++i) {
    const std::string m = "f" + std::to_string(i);
    if (plume_send(self, m.data(), m.size()) != 0) return "";
  }
  return "flooded cpu_ns=" + std::to_string(clock_ns(CLOCK_PROCESS_CPUTIME_ID) - cpu0) +
         " wall_ns=" + std::to_string(clock_ns(CLOCK_MONOTONIC) - wall0);
}

std::string burst(plume_instance* self, int n) {
  int sent = 0, first_full = -1;
  for (int i = 0; i < n; ++i) {
    const std::string m = "b" + std::to_string(i);
    const int r = plume_send_timeout(self, m.data(), m.size(), 0);
    if (r == 0) ++sent;
    else if (r == -ETIMEDOUT && first_full < 0) first_full = i;
    else if (r != -ETIMEDOUT) return "burst error=" + std::to_string(r);
  }
  return "burst sent=" + std::to_string(sent) + " first_full=" + std::to_string(first_full);
}

void burn(int ms) {
  timespec t0{}, t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t0);
  const int64_t until = t0.tv_sec * 1000000000LL + t0.tv_nsec + int64_t{ms} * 1000000;
  do clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  while (t.tv_sec * 1000000000LL + t.tv_nsec < until);
}

char* volatile g_touched = nullptr;  // kept, and seen to be: its peak is what is measured

void touch(int mib) {
  auto* p = static_cast<char*>(std::malloc(static_cast<size_t>(mib) << 20));
  if (p == nullptr) _exit(3);
  std::memset(p, 1, static_cast<size_t>(mib) << 20);
  g_touched = p;
}

[[noreturn]] void oom() {
  std::vector<char*> keep;
  for (;;) {
    char* p = static_cast<char*>(std::malloc(1 << 20));
    if (p == nullptr) _exit(3);
    std::memset(p, 1, 1 << 20);
    keep.push_back(p);
  }
}

// `n` times: fork; the child runs `child(clock_fd)`, which writes (or has an exec'd program
// write) the child's first clock reading to clock_fd, then exits. Returns fork() → that reading.
template <typename Child>
std::vector<uint64_t> time_forks(int n, Child child) {
  std::vector<uint64_t> samples;
  for (int i = 0; i < n; ++i) {
    int fds[2];
    if (pipe(fds) != 0) std::exit(1);
    const uint64_t t0 = now_ns();
    const pid_t pid = fork();
    if (pid == 0) {
      child(fds[1]);
      _exit(127);  // an exec that failed, or a child that returned
    }
    uint64_t t = 0;
    (void)!read(fds[0], &t, sizeof t);
    waitpid(pid, nullptr, 0);
    close(fds[0]);
    close(fds[1]);
    samples.push_back(t - t0);
  }
  return samples;
}

[[noreturn]] void print_median_and_exit(std::vector<uint64_t> samples) {
  std::sort(samples.begin(), samples.end());
  std::printf("%llu\n", static_cast<unsigned long long>(samples[samples.size() / 2]));
  std::exit(0);
}

int init(int argc, char** argv) {
  ++g_init_count;
  g_init_pid = getpid();
  if (const int fd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC); fd >= 0) {
    g_init_fd = fcntl(fd, F_DUPFD_CLOEXEC, 200);
    close(fd);
  }
  if (argc >= 3 && std::strcmp(argv[1], "bare-fork") == 0) {
    // Standalone only (plume_main runs init first): measure and exit.
    print_median_and_exit(time_forks(std::atoi(argv[2]), [](int clock_fd) {
      const uint64_t t = now_ns();
      (void)!write(clock_fd, &t, sizeof t);
      _exit(0);
    }));
  }
  if (argc >= 3 && std::strcmp(argv[1], "wake") == 0) {
    // The floor of any doorbell: wake a process sleeping on a shared futex, to its next
    // instruction after the wait.
    struct Shared {
      std::atomic<uint32_t> bell;
      std::atomic<uint64_t> woke;
    };
    auto* sh = static_cast<Shared*>(mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0));
    const int n = std::atoi(argv[2]);
    const int idle_us = argc >= 4 ? std::atoi(argv[3]) : 2000;
    const pid_t pid = fork();
    if (pid == 0) {
      for (int i = 0; i < n; ++i) {
        while (sh->bell.load() == 0) syscall(SYS_futex, &sh->bell, FUTEX_WAIT, 0, nullptr, nullptr, 0);
        sh->woke.store(now_ns());
        sh->bell.store(0);
      }
      _exit(0);
    }
    std::vector<uint64_t> samples;
    for (int i = 0; i < n; ++i) {
      usleep(static_cast<useconds_t>(idle_us));  // let it fall asleep
      sh->woke.store(0);
      const uint64_t t0 = now_ns();
      sh->bell.store(1);
      syscall(SYS_futex, &sh->bell, FUTEX_WAKE, 1, nullptr, nullptr, 0);
      while (sh->woke.load() == 0) {
      }
      samples.push_back(sh->woke.load() - t0);
      while (sh->bell.load() != 0) {
      }
    }
    waitpid(pid, nullptr, 0);
    print_median_and_exit(std::move(samples));
  }
  if (argc >= 4 && std::strcmp(argv[1], "fork-exec") == 0) {
    print_median_and_exit(time_forks(std::atoi(argv[2]), [&](int clock_fd) {
      dup2(clock_fd, 3);  // first_instruction writes its clock to fd 3
      char* args[] = {argv[3], nullptr};
      execv(argv[3], args);
    }));
  }
  return 0;
}

std::string allowed_cpus() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) != 0) return "?";
  std::string out;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu)
    if (CPU_ISSET(cpu, &set)) out += (out.empty() ? "" : ",") + std::to_string(cpu);
  return out;
}

int handle(plume_instance* self) {
  const uint64_t entered = now_ns();
  // Page faults since fork() (a child's counts start at zero), as the handler begins.
  rusage at_entry{};
  (void)getrusage(RUSAGE_SELF, &at_entry);
  char buf[1024];
  for (;;) {
    const long n = plume_recv(self, buf, sizeof buf - 1, -1);
    if (n < 0) return 100;
    if (n == 0) return 0;
    buf[n] = '\0';
    const std::string cmd(buf, static_cast<size_t>(n));
    std::string reply;
    if (cmd == "t0") {
      reply = std::to_string(entered) + " " + std::to_string(plume_forked_at_ns(self));
    } else if (cmd == "text") {
      reply = text_mapping();
    } else if (cmd == "faults") {
      reply = "minflt=" + std::to_string(at_entry.ru_minflt);
    } else if (cmd == "status") {
      reply = status();
    } else if (cmd == "fds") {
      reply = fds();
    } else if (cmd == "init_fd") {
      reply = std::to_string(g_init_fd);
    } else if (cmd == "maps") {
      reply = channel_mappings();
    } else if (cmd == "ids") {
      reply = "pid=" + std::to_string(getpid()) + " ppid=" + std::to_string(getppid()) +
              " init_pid=" + std::to_string(g_init_pid) + " init_count=" + std::to_string(g_init_count) +
              " nice=" + std::to_string(getpriority(PRIO_PROCESS, 0)) +
              " policy=" + std::to_string(sched_getscheduler(0)) + " cpus=" + allowed_cpus();
    } else if (cmd.rfind("attack ", 0) == 0) {
      reply = attack(static_cast<pid_t>(std::atoi(cmd.c_str() + 7)));
    } else if (cmd == "uring") {
      reply = uring(self);
    } else if (cmd.rfind("burn ", 0) == 0) {
      burn(std::atoi(cmd.c_str() + 5));
      reply = "burnt";
    } else if (cmd.rfind("touch ", 0) == 0) {
      touch(std::atoi(cmd.c_str() + 6));
      reply = "touched";
    } else if (cmd.rfind("ring ", 0) == 0) {
      reply = ring_for(std::atoi(cmd.c_str() + 5), &OutboundRing::doorbell);
    } else if (cmd.rfind("ring-space ", 0) == 0) {
      reply = ring_for(std::atoi(cmd.c_str() + 11), &OutboundRing::inbound_space_bell);
    } else if (cmd == "scribble") {
      const OutboundRing ring = outbound_ring();
      if (!ring.producer) return 102;
      __atomic_add_fetch(ring.producer, 1000u, __ATOMIC_RELEASE);
      futex_wake(ring.doorbell);
      for (;;) (void)plume_recv(self, buf, sizeof buf - 1, -1);
    } else if (cmd.rfind("flood ", 0) == 0) {
      reply = flood(self, std::atoi(cmd.c_str() + 6));
      if (reply.empty()) return 103;
    } else if (cmd.rfind("burst ", 0) == 0) {
      reply = burst(self, std::atoi(cmd.c_str() + 6));  // plume_send below waits for room
    } else if (cmd.rfind("exit ", 0) == 0) {
      return std::atoi(cmd.c_str() + 5);
    } else if (cmd == "segv") {
      static volatile uintptr_t unmapped = 8;  // a real fault, not a raise()
      *reinterpret_cast<volatile int*>(unmapped) = 1;
    } else if (cmd == "oom") {
      oom();
    } else {
      reply = cmd;
    }
    if (plume_send(self, reply.data(), std::min(reply.size(), plume_max_message(self))) != 0) return 101;
  }
}

}  // namespace

PLUME_APP(init, handle)
