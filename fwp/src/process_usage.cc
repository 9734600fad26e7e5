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

std::optional<ProcessStat> parse_process_stat(const char* stat) {
  // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so from the last ')'.
  const char* p = std::strrchr(stat, ')');
  if (p == nullptr || p[1] != ' ' || p[2] == '\0') return std::nullopt;
  ProcessStat s;
  s.state = p[2];
  p += 3;
  // Fields 4 to 15, each a number after one space (tpgid, field 8, may be -1: strtoull takes it).
  unsigned long long fields[16] = {};
  for (int field = 4; field <= 15; ++field) {
    if (*p != ' ') return std::nullopt;
    ++p;
    char* end = nullptr;
    fields[field] = std::strtoull(p, &end, 10);
    if (end == p) return std::nullopt;
    p = end;
  }
  s.parent = static_cast<pid_t>(fields[4]);
  s.utime_ticks = fields[14];
  s.stime_ticks = fields[15];
  return s;
}

std::optional<ProcessUsage> parse_process_usage(const char* stat, const char* status, long ticks_per_second) {
  if (ticks_per_second <= 0) return std::nullopt;
  const auto s = parse_process_stat(stat);
  if (!s) return std::nullopt;
  ProcessUsage u;
  u.cpu_ns = (s->utime_ticks + s->stime_ticks) * (1000000000ull / static_cast<unsigned long long>(ticks_per_second));
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

std::optional<ProcessStat> process_stat(pid_t pid) {
  if (pid <= 0) return std::nullopt;
  const std::string stat = read_proc("/proc/" + std::to_string(pid) + "/stat");
  return stat.empty() ? std::nullopt : parse_process_stat(stat.c_str());
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
