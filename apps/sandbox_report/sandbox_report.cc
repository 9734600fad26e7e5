// sandbox_report: prints the isolation a process sees from the inside, one "key: value" per line,
// so a reader can check at a glance what a Plume worker (or any sandbox) is allowed to do.
// The demo runs it as a tenant's worker; run it on the host to see the difference.
#include <sys/types.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace {

std::vector<std::string> read_lines(const char* path) {
  std::vector<std::string> lines;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

bool starts_with(const std::string& s, const char* prefix) {
  return s.rfind(prefix, 0) == 0;
}

std::string trim(std::string s) {
  const char* ws = " \t";
  s.erase(0, s.find_first_not_of(ws));
  s.erase(s.find_last_not_of(ws) + 1);
  return s;
}

void report_ids() {
  std::printf("pid: %d\n", static_cast<int>(getpid()));
  std::printf("uid: %u (euid %u)\n", getuid(), geteuid());
  std::printf("gid: %u (egid %u)\n", getgid(), getegid());
  // Inside a user namespace, uid 0 is someone else outside: the maps say who.
  for (const char* map : {"uid_map", "gid_map"}) {
    auto lines = read_lines((std::string("/proc/self/") + map).c_str());
    for (const auto& line : lines) {
      std::string fields;
      std::istringstream in(line);
      for (std::string f; in >> f;) fields += (fields.empty() ? "" : " ") + f;
      std::printf("%s: %s (inside outside count)\n", map, fields.c_str());
    }
  }
}

void report_hostname() {
  char name[256] = {};
  if (gethostname(name, sizeof name - 1) != 0) {
    std::printf("hostname: (gethostname: %s)\n", std::strerror(errno));
    return;
  }
  std::printf("hostname: %s\n", name);
}

// The kernel's own view of our privileges: seccomp mode, no_new_privs and the capability sets.
void report_status() {
  auto lines = read_lines("/proc/self/status");
  if (lines.empty()) std::printf("status: (cannot read /proc/self/status)\n");
  for (const auto& line : lines) {
    if (starts_with(line, "Seccomp") || starts_with(line, "NoNewPrivs") || starts_with(line, "Cap")) {
      auto colon = line.find(':');
      std::printf("%s: %s\n", line.substr(0, colon).c_str(), trim(line.substr(colon + 1)).c_str());
    }
  }
}

// /proc/net/dev has two header lines, then one line per interface of our network namespace.
void report_network() {
  auto lines = read_lines("/proc/net/dev");
  if (lines.size() < 2) {
    std::printf("net_interfaces: (cannot read /proc/net/dev)\n");
    return;
  }
  std::string names;
  for (size_t i = 2; i < lines.size(); ++i) {
    auto name = trim(lines[i].substr(0, lines[i].find(':')));
    names += (names.empty() ? "" : ",") + name;
  }
  std::printf("net_interfaces: %zu (%s)\n", lines.size() - 2, names.c_str());
}

// Creating a file is the honest test: access(2) alone ignores read-only bind mounts on some paths.
void report_root_writable() {
  std::string probe = "/.sandbox_report." + std::to_string(getpid());
  FILE* f = std::fopen(probe.c_str(), "wx");
  if (f != nullptr) {
    std::fclose(f);
    std::remove(probe.c_str());
    std::printf("root_writable: yes\n");
  } else {
    std::printf("root_writable: no (%s)\n", std::strerror(errno));
  }
}

void report_cgroup() {
  auto lines = read_lines("/proc/self/cgroup");
  if (lines.empty()) std::printf("cgroup: (cannot read /proc/self/cgroup)\n");
  for (const auto& line : lines) std::printf("cgroup: %s\n", line.c_str());
}

}  // namespace

int main() {
  report_ids();
  report_hostname();
  report_status();
  report_network();
  report_root_writable();
  report_cgroup();
  return std::fflush(stdout) == 0 ? 0 : 1;
}
