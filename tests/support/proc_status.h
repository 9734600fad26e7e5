// What /proc says about a process, for tests that check who a process's parent is and that no
// child was left unreaped.
#pragma once

#include <dirent.h>
#include <sys/types.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace plume::test {

// The first word of "Key:\tvalue" in /proc/<pid>/status ("PPid", "Uid", "Seccomp", ...).
inline std::string proc_status_field(pid_t pid, const std::string& key) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(key + ":", 0) != 0) continue;
    std::istringstream words(line.substr(key.size() + 1));
    std::string first;
    words >> first;
    return first;
  }
  return "<no " + key + " for " + std::to_string(pid) + ">";
}

struct ChildProcess {
  pid_t pid = 0;
  std::string comm;   // its command name (what PR_SET_NAME set)
  std::string state;  // "R", "S", "Z", ...
};

// The children of `parent`, from /proc/<pid>/stat.
inline std::vector<ChildProcess> children_of(pid_t parent) {
  std::vector<ChildProcess> out;
  DIR* proc = ::opendir("/proc");
  if (proc == nullptr) return out;
  const std::string wanted = std::to_string(parent);
  while (dirent* e = ::readdir(proc)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    std::ifstream in(std::string("/proc/") + e->d_name + "/stat");
    std::string stat;
    std::getline(in, stat);
    const size_t comm_start = stat.find('(');
    const size_t comm_end = stat.rfind(')');  // the command may hold spaces and parentheses
    if (comm_start == std::string::npos || comm_end == std::string::npos || comm_end < comm_start) continue;
    std::istringstream rest(stat.substr(comm_end + 1));
    ChildProcess child;
    std::string ppid;
    rest >> child.state >> ppid;
    if (ppid != wanted) continue;
    child.pid = static_cast<pid_t>(std::stol(e->d_name));
    child.comm = stat.substr(comm_start + 1, comm_end - comm_start - 1);
    out.push_back(std::move(child));
  }
  ::closedir(proc);
  return out;
}

// Children of `parent` in state Z: exited, never reaped.
inline int zombie_children_of(pid_t parent) {
  int zombies = 0;
  for (const ChildProcess& c : children_of(parent)) zombies += c.state == "Z" ? 1 : 0;
  return zombies;
}

}  // namespace plume::test
