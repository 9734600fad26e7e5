// fwp_recycle_probe: what would recycling a finished instance save over forking a new one?
//
// Plume's churn (fwp_bench churn) is capped by forking: the warm pool sustains what template
// forks sustain, since every start is refilled by one fork and ended by one exit. Recycling would
// instead put a finished instance back to the template's state in place. This probe measures the
// two mechanisms alone, side by side, with the same doorbell (a pipe round trip) and the same
// work per cycle (the "handler" writes --dirty-pages pages of a warmed heap):
//   fork:  the "template" forks a child that writes the pages, answers and exits; the template
//          reads the answer and reaps it (fork + copy-on-write faults + exit + wait);
//   reset: one child, forked once, waits for the doorbell, writes the pages, answers, then puts
//          the pages back to the template's contents: its heap is a private mapping of a memfd
//          snapshot, so MADV_DONTNEED on what it wrote is the whole reset.
// Slices of --rounds cycles alternate between the two, --slices each, so that the machine's
// drift hits both alike. Reported: medians and p99 of each, and their ratio. The reset is checked:
// a page read after it must hold the snapshot's bytes again, or the probe fails (exit 1).
//
// It is a probe of the kernel's side only: a real recycle also closes descriptors, unmaps what the
// handler mapped, resets brk, signal dispositions, timers, the channel's slots and the random
// state (docs/fwp.md, "Recycling"). See docs/fwp.md for the figures it gave.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>
#include <vector>

namespace {

constexpr size_t kPage = 4096;
constexpr char kSnapshotByte = 7;

uint64_t now_ns() {
  timespec t{};
  ::clock_gettime(CLOCK_MONOTONIC, &t);
  return static_cast<uint64_t>(t.tv_sec) * 1000000000u + static_cast<uint64_t>(t.tv_nsec);
}

[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "fwp_recycle_probe: %s: %s\n", what, std::strerror(errno));
  std::exit(1);
}

struct Options {
  size_t heap_kib = 256;
  size_t dirty_pages = 4;
  size_t rounds = 500;
  size_t slices = 6;
};

double percentile_us(std::vector<uint64_t> v, double p) {
  std::sort(v.begin(), v.end());
  return static_cast<double>(v[static_cast<size_t>(p * static_cast<double>(v.size() - 1))]) / 1e3;
}

void write_pages(volatile char* heap, size_t pages, char value) {
  for (size_t k = 0; k < pages; ++k) heap[k * kPage] = value;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string key = argv[i];
    const size_t value = std::strtoul(argv[i + 1], nullptr, 10);
    if (key == "--heap-kib") o.heap_kib = value;
    else if (key == "--dirty-pages") o.dirty_pages = value;
    else if (key == "--rounds") o.rounds = value;
    else if (key == "--slices") o.slices = value;
    else {
      std::fprintf(stderr, "usage: fwp_recycle_probe [--heap-kib N] [--dirty-pages N] [--rounds N] [--slices N]\n");
      return 2;
    }
  }
  const size_t len = o.heap_kib * 1024;
  if (o.dirty_pages * kPage > len || o.rounds == 0 || o.slices == 0) {
    std::fprintf(stderr, "fwp_recycle_probe: --dirty-pages must fit in --heap-kib; rounds and slices > 0\n");
    return 2;
  }
  // The template's warmed state, written once into the snapshot; the heap maps it privately and
  // is populated, with an anonymous page so that fork() copies its page-table entries, as a
  // template's warmed heap would have them.
  const int snapshot = ::memfd_create("plume-recycle-probe", MFD_CLOEXEC);
  if (snapshot < 0 || ::ftruncate(snapshot, static_cast<off_t>(len)) != 0) die("memfd");
  void* init = ::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED, snapshot, 0);
  if (init == MAP_FAILED) die("mmap snapshot");
  std::memset(init, kSnapshotByte, len);
  ::munmap(init, len);
  void* mapped = ::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_POPULATE, snapshot, 0);
  if (mapped == MAP_FAILED) die("mmap heap");
  auto* heap = static_cast<volatile char*>(mapped);
  heap[len - 1] = kSnapshotByte;  // the anonymous page: written, with the snapshot's byte

  int bell[2], answer[2];
  if (::pipe2(bell, O_CLOEXEC) != 0 || ::pipe2(answer, O_CLOEXEC) != 0) die("pipe2");
  char byte = 0;
  const pid_t recycled = ::fork();
  if (recycled < 0) die("fork");
  if (recycled == 0) {
    ::close(bell[1]);
    for (;;) {
      if (::read(bell[0], &byte, 1) != 1) ::_exit(0);
      write_pages(heap, o.dirty_pages, 1);
      // The reset: the written pages go back to the snapshot's contents.
      if (::madvise(mapped, o.dirty_pages * kPage, MADV_DONTNEED) != 0) ::_exit(3);
      byte = heap[0] == kSnapshotByte && heap[(o.dirty_pages - 1) * kPage] == kSnapshotByte ? 1 : 0;
      if (::write(answer[1], &byte, 1) != 1) ::_exit(4);
    }
  }
  ::close(bell[0]);

  std::vector<uint64_t> forked, reset;
  bool reset_held = true;
  for (size_t slice = 0; slice < o.slices; ++slice) {
    for (size_t i = 0; i < o.rounds; ++i) {
      const uint64_t t0 = now_ns();
      const pid_t pid = ::fork();
      if (pid < 0) die("fork");
      if (pid == 0) {
        write_pages(heap, o.dirty_pages, 1);
        ::_exit(::write(answer[1], &byte, 1) == 1 ? 0 : 4);
      }
      if (::read(answer[0], &byte, 1) != 1) die("read (fork)");
      int status = 0;
      if (::waitpid(pid, &status, 0) != pid || status != 0) die("waitpid");
      forked.push_back(now_ns() - t0);
    }
    for (size_t i = 0; i < o.rounds; ++i) {
      const uint64_t t0 = now_ns();
      if (::write(bell[1], &byte, 1) != 1) die("write (reset)");
      if (::read(answer[0], &byte, 1) != 1) die("read (reset)");
      reset.push_back(now_ns() - t0);
      reset_held = reset_held && byte == 1;
    }
  }
  ::close(bell[1]);
  int status = 0;
  ::waitpid(recycled, &status, 0);

  const double fork_p50 = percentile_us(forked, 0.5), reset_p50 = percentile_us(reset, 0.5);
  std::printf("heap %zu KiB, %zu pages written per cycle, %zu slices of %zu rounds each way\n", o.heap_kib,
              o.dirty_pages, o.slices, o.rounds);
  std::printf("| cycle | p50 | p99 |\n|---|---:|---:|\n");
  std::printf("| fork + write + exit + wait | %.1f µs | %.1f µs |\n", fork_p50, percentile_us(forked, 0.99));
  std::printf("| doorbell + write + reset (MADV_DONTNEED) | %.1f µs | %.1f µs |\n", reset_p50, percentile_us(reset, 0.99));
  std::printf("fork / reset (medians): %.1fx\n", fork_p50 / reset_p50);
  if (!reset_held || status != 0) {
    std::fprintf(stderr, "fwp_recycle_probe: a reset did not give back the snapshot's contents\n");
    return 1;
  }
  return 0;
}
