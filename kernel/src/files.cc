#include "files.h"

#include <sys/stat.h>

#include <cerrno>
#include <fstream>
#include <sstream>

namespace plume::kernel {

ConfigResult<std::string> read_text_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) return fail(ConfigError{"cannot read " + path});
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool make_dirs(const std::string& path, mode_t parents_mode, mode_t last_mode, bool& created) {
  created = false;
  for (size_t i = 1; i <= path.size(); ++i) {
    if (i != path.size() && path[i] != '/') continue;
    const bool last = i == path.size();
    if (::mkdir(path.substr(0, i).c_str(), last ? last_mode : parents_mode) == 0) created = last;
    else if (errno != EEXIST) return false;
  }
  return true;
}

}  // namespace plume::kernel
