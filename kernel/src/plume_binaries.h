// Where plumed finds the binaries of Plume's own that it starts: plume-ns-holder, plume-spawn.
#pragma once

#include <string>

namespace plume {

// `name` next to plumed, in ../libexec/plume/ of plumed's directory (`cmake --install`), in the
// build tree's fwp/ (plumed is in kernel/), or under /usr/libexec/plume. Empty if none is there.
std::string plume_binary_path(const std::string& name);

}  // namespace plume
