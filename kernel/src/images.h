// Images: named root filesystems workers run in, each with its seccomp filter compiled once at
// registration (never per start). "host" is built in: the host's /usr, /bin, /lib, /etc, read-only.
#pragma once

#include <sys/stat.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "config.h"
#include "plume/fwp/seccomp_profile.h"

namespace plume::kernel {

// Which file a path named when it was looked at: a new build installed over it (a new inode, or
// the same one rewritten) reads differently.
struct FileIdentity {
  dev_t dev = 0;
  ino_t ino = 0;
  off_t size = 0;
  int64_t mtime_ns = 0;
  bool operator==(const FileIdentity&) const = default;
};
std::optional<FileIdentity> identify_file(const std::string& path);

struct Image {
  ImageSpec spec;
  std::string source;       // "host", "rootfs" or "bundle"
  std::string rootfs_path;  // resolved directory; empty for host
  bool read_only = true;
  fwp::CompiledFilter filter;
  // A featherweight image's app as it was when the image was added: its templates run that build.
  std::optional<FileIdentity> fwp_binary;
  // Whether fwp.binary names another file, or a rewritten one, since then (or is gone).
  bool fwp_binary_changed() const {
    return spec.fwp.enabled && identify_file(spec.fwp.binary) != fwp_binary;
  }
};

class ImageRegistry {
 public:
  ImageRegistry();
  // Resolves the rootfs (an OCI bundle's config.json root.path), checks it is a directory, and
  // compiles the seccomp profile. Errors name the file and what is wrong.
  ConfigResult<Image*> add(const ImageSpec& spec);
  // What add() checks and compiles, without adding it: a replacement is made before the image it
  // replaces goes.
  static ConfigResult<std::unique_ptr<Image>> prepare(const ImageSpec& spec);
  Image* insert(std::unique_ptr<Image> image);  // in place of any image of its name
  ConfigResult<bool> remove(const std::string& name);
  Image* find(const std::string& name);
  std::vector<Image*> list();

 private:
  std::map<std::string, std::unique_ptr<Image>> images_;
};

}  // namespace plume::kernel
