#include "plume/fwp/process_usage.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>

namespace plume::fwp {
namespace {

// The whole of a small /proc file ("" if it cannot be read).
std::string read_proc(const std::string& path) {
  std::string out;
  const int f = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (f < 0) return out;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(f, buf, sizeof buf);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(f);
  return out;
}

}  // namespace

std::optional<ProcessUsage> parse_process_usage(const char* stat, const char* status, long ticks_per_second) {
  if (ticks_per_second <= 0) return std::nullopt;
  // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so from the last ')'.
  // utime and stime are fields 14 and 15, the 12th and 13th after the name.
  const char* p = std::strrchr(stat, ')');
  if (p == nullptr) return std::nullopt;
  ++p;
  unsigned long long ticks[2] = {0, 0};
  for (int field = 3; field <= 15; ++field) {
    while (*p == ' ') ++p;
    if (*p == '\0') return std::nullopt;
    char* end = nullptr;
    const unsigned long long v = std::strtoull(p, &end, 10);
    if (field >= 14) {
      if (end == p) return std::nullopt;
      ticks[field - 14] = v;
    }
    p = std::strchr(p, ' ');
    if (p == nullptr && field < 15) return std::nullopt;
    if (p == nullptr) break;
  }
  ProcessUsage u;
  u.cpu_ns = (ticks[0] + ticks[1]) * (1000000000ull / static_cast<unsigned long long>(ticks_per_second));
  // "VmHWM:\t    1234 kB", a line of its own; absent for a zombie (no memory left): then 0.
  for (const char* line = status; line != nullptr && *line != '\0';) {
    if (std::strncmp(line, "VmHWM:", 6) == 0) {
      u.peak_rss_bytes = std::strtoull(line + 6, nullptr, 10) * 1024;
      break;
    }
    line = std::strchr(line, '\n');
    if (line != nullptr) ++line;
  }
  return u;
}

std::optional<ProcessUsage> process_usage(pid_t pid) {
  if (pid <= 0) return std::nullopt;
  const std::string dir = "/proc/" + std::to_string(pid);
  const std::string stat = read_proc(dir + "/stat");
  if (stat.empty()) return std::nullopt;
  const std::string status = read_proc(dir + "/status");
  return parse_process_usage(stat.c_str(), status.c_str(), ::sysconf(_SC_CLK_TCK));
}

}  // namespace plume::fwp
