// A tenant's shared namespaces: user, pid, net, ipc and uts, created once per tenant and held by
// a process of Plume's own (plume-ns-holder, pid 1 of the pid namespace) that runs nothing of the
// tenant's. Every template of the tenant joins them (SandboxSpec::join_namespaces_of = pidfd()),
// so a tenant's images share one network stack, one pid space and one hostname, while each
// template keeps its own mount namespace (its image's root) and cgroup namespace.
//
// The holder's death ends every process in those namespaces (the kernel kills a pid namespace
// whose init exits): destroying a TenantNamespaces ends the tenant's templates and instances.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>

#include "plume/base/sys_error.h"
#include "plume/base/unique_fd.h"
#include "plume/fwp/sandbox_spec.h"

namespace plume::fwp {

class SpawnService;

class TenantNamespaces {
 public:
  // Spawns the holder through the containment pipeline and waits for its exec. `sandbox` is set
  // up as for any worker (uid_map/gid_map: the tenant's range, name: the tenant's hostname,
  // rootfs, seccomp, cgroup); argv, env and granted_fds are the holder's own. `holder_binary`:
  // plume-ns-holder on the host. `spawner`: see spawn_service.h; null: spawn() in this process.
  static SysResult<std::unique_ptr<TenantNamespaces>> create(SandboxSpec sandbox,
                                                             const std::string& holder_binary,
                                                             SpawnService* spawner = nullptr);
  // Ends the holder (SIGKILL), and with it everything in the namespaces; does not wait. The holder
  // is reaped on a thread of its own: its exit completes only once the templates' keepers (the
  // caller's children) are reaped, which the caller's loop does when it sees them exit.
  ~TenantNamespaces();
  TenantNamespaces(const TenantNamespaces&) = delete;
  TenantNamespaces& operator=(const TenantNamespaces&) = delete;

  int pidfd() const { return pidfd_.get(); }  // for SandboxSpec::join_namespaces_of
  pid_t pid() const { return pid_; }
  // False once the holder has exited (and with it everything in the namespaces).
  bool alive() const;

 private:
  TenantNamespaces() = default;
  pid_t pid_ = -1;
  UniqueFd pidfd_;
  UniqueFd release_;  // write end of the holder's fd 0: closing it ends the holder
};

}  // namespace plume::fwp
