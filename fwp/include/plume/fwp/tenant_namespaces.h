// A tenant's shared namespaces: user, pid, net, ipc and uts, created once per tenant and held by
// a process of Plume's own (plume-ns-holder, pid 1 of the pid namespace) that runs nothing of the
// tenant's. Every template of the tenant joins them (SandboxSpec::join_namespaces_of = pidfd(),
// or TemplateSpec::tenant_namespaces), so a tenant's images share one network stack, one pid
// space and one hostname, while each template keeps its own mount namespace (its image's root)
// and cgroup namespace.
//
// The holder's death ends every process in those namespaces (the kernel kills a pid namespace
// whose init exits): destroying a TenantNamespaces ends the tenant's templates and instances.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "plume/base/sys_error.h"
#include "plume/base/unique_fd.h"
#include "plume/fwp/sandbox_spec.h"
#include "plume/fwp/spawner.h"

namespace plume::fwp {

class Poller;
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
  // The same without waiting, for a caller with an event loop (plumed): the holder is cloned by
  // `spawner`'s helper (spawn_async; null: spawn() here) and its exec is watched in `poller`, so
  // the caller's loop goes on meanwhile. The result is `starting` until then; when_settled()
  // says when it is `ready` or `failed`. Fails here only where the request cannot be put
  // together (an fd). The SpawnService and the Poller must outlive it.
  static SysResult<std::unique_ptr<TenantNamespaces>> start(SandboxSpec sandbox,
                                                            const std::string& holder_binary,
                                                            SpawnService* spawner, Poller& poller);
  // Ends the holder (SIGKILL), and with it everything in the namespaces; does not wait. The holder
  // is reaped on a thread of its own: its exit completes only once the templates' keepers (the
  // caller's children) are reaped, which the caller's loop does when it sees them exit. A holder
  // still being cloned is cancelled (SpawnService::cancel); its waiters are not called.
  ~TenantNamespaces();
  TenantNamespaces(const TenantNamespaces&) = delete;
  TenantNamespaces& operator=(const TenantNamespaces&) = delete;

  enum class State : uint8_t {
    starting,  // the holder is being cloned or has not exec'd yet: pidfd() is not usable
    ready,     // the holder runs: its namespaces can be joined
    failed,    // it never ran (error() says why); nothing is left of it
  };
  State state() const { return state_; }
  const std::string& error() const { return error_; }

  // `settled` runs once, from the poller's callback, when a `starting` holder is ready or has
  // failed. Only while starting (check state() first). The id is for forget(), which a waiter
  // whose owner goes first must call. Waiters run in the order they were added.
  using WaiterId = uint64_t;
  WaiterId when_settled(std::function<void()> settled);
  void forget(WaiterId id);

  int pidfd() const { return pidfd_.get(); }  // for SandboxSpec::join_namespaces_of; -1 unless ready
  pid_t pid() const { return pid_; }
  // False once the holder has exited (and with it everything in the namespaces) or failed to
  // start; true while it starts.
  bool alive() const;

 private:
  TenantNamespaces() = default;
  // The holder's spec: `sandbox` with the holder's argv, env and fds (kept in `fds`).
  struct Request;
  static SysResult<Request> make_request(SandboxSpec sandbox, const std::string& holder_binary,
                                         TenantNamespaces& ns);
  void adopt(Result<Process, SpawnError> holder);  // the helper's answer
  void on_exec_status();
  void settle(State state, std::string error);

  State state_ = State::ready;
  std::string error_;
  pid_t pid_ = -1;
  UniqueFd pidfd_;
  UniqueFd release_;  // write end of the holder's fd 0: closing it ends the holder
  // start(): while the holder is cloned (the helper's ticket), then until it has exec'd.
  SpawnService* spawner_ = nullptr;
  Poller* poller_ = nullptr;
  uint64_t request_ = 0;
  UniqueFd status_fd_;  // the holder's exec status (end of file: exec'd)
  UniqueFd sync_fd_;
  std::map<WaiterId, std::function<void()>> waiters_;
  WaiterId next_waiter_ = 1;
};

}  // namespace plume::fwp
