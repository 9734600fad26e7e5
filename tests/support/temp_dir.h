// A private temp directory for tests: the fwp spawn fixture, the plumed fixture, the http tests.
// Header-only, so any test target that has tests/ on its include path can use it.
#pragma once

#include <ftw.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace plume::test {

// Lines of /proc/self/mountinfo whose mount point is `dir` or under it.
inline std::vector<std::string> mounts_under(const std::string& dir) {
  std::vector<std::string> out;
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::string id, parent, devno, root, mountpoint;
    ls >> id >> parent >> devno >> root >> mountpoint;
    if (mountpoint == dir || mountpoint.rfind(dir + "/", 0) == 0) out.push_back(line);
  }
  return out;
}

// /tmp/plume-<tag>-XXXXXX, mode 0755 so that tenant uids can traverse it. Destruction detaches any
// mounts left below it, then removes everything without crossing into another file system.
// Creation failure throws: a test cannot go on without its directory, and an empty path would let
// callers build paths under "/".
class TempDir {
 public:
  explicit TempDir(std::string_view tag = "test") {
    std::string templ = "/tmp/plume-" + std::string(tag) + "-XXXXXX";
    if (::mkdtemp(templ.data()) == nullptr) {
      throw std::runtime_error("mkdtemp " + templ + ": " + std::strerror(errno));
    }
    path_ = templ;
    ::chmod(path_.c_str(), 0755);
  }
  ~TempDir() {
    // Deepest mounts last in mountinfo order: detach in reverse.
    auto mounts = mounts_under(path_);
    for (auto it = mounts.rbegin(); it != mounts.rend(); ++it) {
      std::istringstream ls(*it);
      std::string id, parent, devno, root, mountpoint;
      ls >> id >> parent >> devno >> root >> mountpoint;
      ::umount2(mountpoint.c_str(), MNT_DETACH);
    }
    ::nftw(path_.c_str(), remove_entry, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  static int remove_entry(const char* path, const struct stat*, int type, struct FTW*) {
    if (type == FTW_DP) ::rmdir(path);
    else ::unlink(path);
    return 0;
  }

  std::string path_;
};

}  // namespace plume::test
