// Tenants and images added through the control API, kept in <state_dir>/api-state.json so that
// they outlast plumed: a restart (an upgrade, `Restart=on-failure` after a crash) brings them
// back with the same tokens and uid ranges. The config file stays the operator's: plumed never
// writes it, and where it names a tenant or image too, the file's wins (restore_api_state).
#pragma once

#include <map>
#include <string>
#include <vector>

#include "config.h"

namespace plume::kernel {

class Supervisor;

class ApiState {
 public:
  // Records nothing: API additions last until plumed stops (no state_dir configured).
  ApiState() = default;
  // Reads <dir>/api-state.json (dir absolute: the config and plumed's flag check it), creating
  // dir (0700) where it is missing; an absent file is an
  // empty state. A file that does not parse, or whose entries do not, is an error that names
  // it: plumed then refuses to start rather than overwrite what an operator may still need.
  static ConfigResult<ApiState> open(const std::string& dir);

  bool enabled() const { return !path_.empty(); }
  const std::string& path() const { return path_; }
  const std::map<std::string, TenantSpec>& tenants() const { return tenants_; }
  const std::map<std::string, ImageSpec>& images() const { return images_; }

  // Each writes the whole file again (a temporary file, fsync, rename) and returns "" or what
  // failed; the state in memory changes only once the file is written. Without a state_dir they
  // do nothing.
  std::string record_tenant(const TenantSpec& spec);
  std::string forget_tenant(const std::string& name);
  std::string record_image(const ImageSpec& spec);
  std::string forget_image(const std::string& name);
  // Forgets what `config` names (the file owns those now); `forgotten` gets "tenant x", "image y".
  std::string forget_names_in(const Config& config, std::vector<std::string>& forgotten);

 private:
  std::string save(const std::map<std::string, TenantSpec>& tenants, const std::map<std::string, ImageSpec>& images);

  std::string path_;
  std::map<std::string, TenantSpec> tenants_;
  std::map<std::string, ImageSpec> images_;
};

struct RestoreReport {
  std::vector<std::string> restored;    // "tenant x", "image y": running again
  std::vector<std::string> superseded;  // the config file names them too: its version runs
  std::vector<std::string> failed;      // could not be added again (the error); kept in the file
  std::string save_error;               // forgetting the superseded ones failed to write
};

// At start, after the config file's tenants and images: adds what the API had added.
RestoreReport restore_api_state(Supervisor& sup, ApiState& state);

}  // namespace plume::kernel
