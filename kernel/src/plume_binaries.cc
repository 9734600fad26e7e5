#include "plume_binaries.h"

#include <limits.h>
#include <stdlib.h>
#include <unistd.h>

#include <vector>

namespace plume {

std::string plume_binary_path(const std::string& name) {
  char exe[4096];
  const ssize_t n = ::readlink("/proc/self/exe", exe, sizeof exe - 1);
  std::vector<std::string> candidates;
  if (n > 0) {
    const std::string self(exe, static_cast<size_t>(n));
    const std::string dir = self.substr(0, self.rfind('/'));
    candidates = {dir + "/" + name, dir + "/../libexec/plume/" + name, dir + "/../fwp/" + name};
  }
  candidates.push_back("/usr/libexec/plume/" + name);
  for (const std::string& c : candidates) {
    if (::access(c.c_str(), X_OK) != 0) continue;
    char real[PATH_MAX];
    return ::realpath(c.c_str(), real) != nullptr ? std::string(real) : c;  // for the logs: no "/../"
  }
  return "";
}

}  // namespace plume
