// What a program needs to run real fwp templates outside plumed: a staging directory for their
// rootfs views, a cgroup parent of its own, the default seccomp profile compiled once, and a
// TemplateSpec of a libplume binary put together from those. The fwp_fast tests and bench/fwp
// share it (library plume_template_host), so both sandbox templates the same way.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "plume/base/result.h"
#include "plume/fwp/cgroup.h"
#include "plume/fwp/seccomp_profile.h"
#include "plume/fwp/template.h"

namespace plume::test {

class TemplateHost {
 public:
  // A staging directory /tmp/<prefix>-XXXXXX and the cgroup parent `cgroup_parent` (which
  // should be unique to the process and the use: "plume-test-<pid>-fast3").
  static SysResult<std::unique_ptr<TemplateHost>> create(const std::string& prefix,
                                                         const std::string& cgroup_parent);
  // Kills whatever is left under the cgroup parent, removes it and the staging directory.
  // Destroy the templates first: theirs are the processes and groups it removes.
  ~TemplateHost();
  TemplateHost(const TemplateHost&) = delete;
  TemplateHost& operator=(const TemplateHost&) = delete;

  fwp::CgroupManager& cgroups() { return *cgroups_; }

  // A spec of `binary` (a host path) named `name`: the default view as its rootfs, argv
  // {argv0}, a plain environment, uid and gid 1000 of the range [id_base, id_base + 65536),
  // no core dumps, the default seccomp profile (with io_uring allowed if `io_uring`), the
  // template in cgroup `group` (which must exist), 16 slots of 1024 bytes per channel, stderr
  // to ours, and `cgroups()` for instance groups.
  fwp::TemplateSpec spec(const std::string& name, const std::string& binary,
                         const std::string& argv0, uint32_t id_base, const std::string& group,
                         bool io_uring = false);

 private:
  TemplateHost() = default;
  std::string staging_;
  std::optional<fwp::CgroupManager> cgroups_;
};

// The default profile, compiled once per process (aborts if it cannot be).
const fwp::CompiledFilter& default_filter(bool io_uring);

}  // namespace plume::test
