// Images: named root filesystems workers run in, each with its seccomp filter compiled once at
// registration (never per start). "host" is built in: the host's /usr, /bin, /lib, /etc, read-only.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "config.h"
#include "plume/fwp/seccomp_profile.h"

namespace plume::kernel {

struct Image {
  ImageSpec spec;
  std::string source;       // "host", "rootfs" or "bundle"
  std::string rootfs_path;  // resolved directory; empty for host
  bool read_only = true;
  fwp::CompiledFilter filter;
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
