#include "id_map.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

#include "plume/base/unique_fd.h"

namespace plume::fwp::detail {
namespace {

// One write(2) of the whole content: the kernel accepts a map only in a single write.
std::optional<SpawnError> write_file(Step step, const std::string& path, const std::string& text) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd) return SpawnError{step, errno, "open " + path};
  const ssize_t n = ::write(fd.get(), text.data(), text.size());
  if (n < 0) return SpawnError{step, errno, "write " + path};
  if (static_cast<size_t>(n) != text.size()) return SpawnError{step, EIO, "short write " + path};
  return std::nullopt;
}

std::string map_line(const IdMap& m) {
  return std::to_string(m.inside) + " " + std::to_string(m.outside) + " " +
         std::to_string(m.count) + "\n";
}

}  // namespace

std::optional<SpawnError> write_id_maps(pid_t pid, const IdMap& uid_map, const IdMap& gid_map) {
  const std::string dir = "/proc/" + std::to_string(pid) + "/";
  if (auto e = write_file(Step::id_maps, dir + "uid_map", map_line(uid_map))) return e;
  if (auto e = write_file(Step::id_maps, dir + "gid_map", map_line(gid_map))) return e;
  return std::nullopt;
}

std::optional<SpawnError> attach_cgroups(pid_t pid, const std::vector<std::string>& procs_files) {
  const std::string text = std::to_string(pid);
  for (const std::string& file : procs_files) {
    if (auto e = write_file(Step::cgroup_attach, file, text)) return e;
  }
  return std::nullopt;
}

}  // namespace plume::fwp::detail
