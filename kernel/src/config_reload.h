// plumed's SIGHUP: what of a new load of its config file can take effect without a restart.
//
// Tenants and images new to plumed are added, as the API would add them. A running tenant takes
// its new token (the old one stops working) and its new limits, written to its cgroup, which its
// workers' cgroups sit below. The log level is set. Everything else is left as it is and
// reported, because changing it in place would touch running work: a tenant whose uid range
// changed (its workers run mapped to the old one), an image the file describes differently (its
// templates were made from the old spec: remove and re-add it through the API), a tenant or image
// the file no longer lists (removing it would stop its workers: `plume tenant rm`), and the
// daemon and cgroup settings, which only a restart changes. A file that does not load changes
// nothing.
#pragma once

#include <string>
#include <vector>

#include "config.h"

namespace plume::kernel {

class Supervisor;

struct ReloadReport {
  std::vector<std::string> added;         // "tenant alpha", "image kv"
  std::vector<std::string> updated;       // a running tenant given its new token and limits
  std::vector<std::string> differ;        // described differently by the file; left as running
  std::vector<std::string> dropped;       // in the previous file, not in this one; still there
  std::vector<std::string> failed;        // "tenant beta: <why it could not be added>"
  std::vector<std::string> need_restart;  // "daemon.shutdown_grace_ms"
  bool log_level_set = false;
};

// `before`: the configuration plumed last loaded (flags applied); `after`: the new load, with the
// same flags applied. Adds to `sup` what `after` has new.
ReloadReport reload_config(Supervisor& sup, const Config& before, const Config& after);

}  // namespace plume::kernel
