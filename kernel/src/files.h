// Small file-system steps plumed's parts share: reading a whole file, and mkdir -p.
#pragma once

#include <sys/types.h>

#include <string>

#include "config.h"

namespace plume::kernel {

// The whole file, or "cannot read <path>".
ConfigResult<std::string> read_text_file(const std::string& path);

// Creates `path` and its missing parents, the parents with `parents_mode` and the last with
// `last_mode`; `created` tells whether the last one was new. False with errno set on failure
// (the component that failed is not named: callers name `path`).
bool make_dirs(const std::string& path, mode_t parents_mode, mode_t last_mode, bool& created);

}  // namespace plume::kernel
