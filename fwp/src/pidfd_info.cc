// Parsing /proc/self/fdinfo/<pidfd>.
#include "pidfd_info.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>

#include "plume/fwp/process_usage.h"

namespace plume::fwp {

SysResult<PidfdInfo> parse_pidfd_info(const char* text) {
  PidfdInfo info;
  bool have_pid = false;
  for (const char* line = text; line != nullptr && *line != '\0';) {
    const char* end = std::strchr(line, '\n');
    const std::string l(line, end != nullptr ? static_cast<size_t>(end - line) : std::strlen(line));
    if (l.rfind("Pid:", 0) == 0) {
      info.pid = static_cast<pid_t>(std::strtol(l.c_str() + 4, nullptr, 10));
      have_pid = true;
    } else if (l.rfind("NSpid:", 0) == 0) {
      const char* p = l.c_str() + 6;
      for (;;) {
        char* next = nullptr;
        const long v = std::strtol(p, &next, 10);
        if (next == p) break;
        info.ns_pids.push_back(static_cast<pid_t>(v));
        p = next;
      }
    }
    line = end != nullptr ? end + 1 : nullptr;
  }
  if (!have_pid) return fail(plain_error("pidfd_info", "no Pid: line (not a pidfd)"));
  return info;
}

pid_t parent_pid(pid_t pid) {
  const auto stat = process_stat(pid);
  return stat ? stat->parent : -1;
}

SysResult<PidfdInfo> pidfd_info(int fd) {
  const std::string path = "/proc/self/fdinfo/" + std::to_string(fd);
  const int f = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (f < 0) return fail(sys_error("open", path));
  char buf[1024];
  const ssize_t n = ::read(f, buf, sizeof buf - 1);
  const int err = errno;
  ::close(f);
  if (n < 0) return fail(SysError{"read", err, path});
  buf[n] = '\0';
  return parse_pidfd_info(buf);
}

}  // namespace plume::fwp
