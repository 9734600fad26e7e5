// plumed's SIGHUP: what of a new load of its config file can take effect without a restart.
//
// Running work is never stopped. Within that:
// - a tenant or image the file no longer names is removed, as the API would remove it, unless
//   some of its workers run (then it is kept, the API can remove it from then on, and each later
//   reload tries again);
// - tenants and images new to plumed are added, as the API would add them;
// - a running tenant takes its new token (the old one stops working) and its new limits, written
//   to its cgroup, which its workers' cgroups sit below;
// - a tenant whose uid range changed is removed and added again as the file has it, unless some
//   of its workers run (they run mapped to the old range);
// - an image the file describes differently is resized in place if only its pool changed, and
//   otherwise replaced (its templates go, the next start makes new ones) unless an instance of
//   it runs; so is one whose app is a new build at the same path (Image::fwp_binary_changed);
// - the log level is set.
// What is left is reported: a tenant or image whose change would stop its running workers, and
// the daemon and cgroup settings, which only a restart changes. A file that does not load
// changes nothing.
#pragma once

#include <string>
#include <vector>

#include "config.h"

namespace plume::kernel {

class Supervisor;

struct ReloadReport {
  std::vector<std::string> added;         // "tenant alpha", "image kv"
  std::vector<std::string> updated;       // a running tenant given its new token and limits
  std::vector<std::string> replaced;      // a tenant with a new uid range, an image described
                                          // differently: removed and added again, nothing running
  std::vector<std::string> removed;       // in the previous file, not in this one, nothing running
  std::vector<std::string> differ;        // described differently by the file; left as running
  std::vector<std::string> dropped;       // in the previous file, not in this one; still running
  std::vector<std::string> failed;        // "tenant beta: <why it could not be added>"
  std::vector<std::string> need_restart;  // "daemon.shutdown_grace_ms"
  bool log_level_set = false;
};

// `before`: the configuration plumed last loaded (flags applied); `after`: the new load, with the
// same flags applied. Adds to `sup` what `after` has new.
ReloadReport reload_config(Supervisor& sup, const Config& before, const Config& after);

}  // namespace plume::kernel
