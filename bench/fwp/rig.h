// The FWP side of bench/fwp: real templates of bench/fwp/first_handler, each in the full sandbox
// (user namespace with its own uid range, pid/mount/ipc/uts/net namespaces, the default seccomp
// profile, a cgroup), driven by one PollLoop in the benchmark process, which is the supervisor.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "plume/base/sys_error.h"
#include "plume/base/unique_fd.h"
#include "plume/fwp/template.h"
#include "plume/fwp/tenant_namespaces.h"
#include "peers.h"  // monotonic_ns
#include "support/template_host.h"

namespace plume::bench {

class Rig {
 public:
  // A cgroup parent "plume-bench-fwp-<pid>" of its own and a staging directory in /tmp. Each
  // tenant's templates join that tenant's namespaces, held by `ns_holder` (as plumed does;
  // empty: each template gets namespaces of its own).
  static SysResult<std::unique_ptr<Rig>> create(std::string binary, std::string ns_holder);
  ~Rig();  // templates first, then the tenants' holders, the cgroups and the staging directory
  Rig(const Rig&) = delete;
  Rig& operator=(const Rig&) = delete;

  // Starts template `tenant`/`image` of first_handler under cgroup "<tenant>/<image>" with the uid
  // range 300000 + tenant_index * 65536 (65536 ids), in the tenant's namespaces (made with its
  // first template), and runs the loop until its hello.
  // `spinning`: of the pool, how many are spinning standbys. `huge_text`: TemplateSpec's, as an
  // image whose starts fork would set it (PLUME_NO_HUGE_TEXT=1 in the environment turns it off,
  // for A/B runs).
  SysResult<fwp::Template*> start_template(int tenant_index, const std::string& image,
                                           size_t pool_size, size_t spinning = 0, bool huge_text = false);
  // Runs the loop until the template's pool holds `pool_size` instances that announced
  // readiness (the templates given, or all).
  bool fill_pools(std::chrono::milliseconds timeout);

  // One start, measured: t0 just before start_instance(msg), t1 the handler's clock reading from
  // its reply (which must echo msg), t2 when instance_exited ran. Forgets the instance.
  struct Timed {
    int64_t t0 = 0, t1 = 0, t_reply = 0, t2 = 0;
    fwp::StartPath path = fwp::StartPath::fork;
  };
  // Starts retried, not measured: the controller reported the instance `lost`, or (at most 10
  // times) it exited without replying; see docs/benchmarks.md.
  size_t lost() const { return retried_; }
  size_t no_reply() const { return no_reply_; }
  // Retries (up to 5 times) a start whose instance the controller reported lost.
  SysResult<Timed> start_and_wait(fwp::Template& t, std::span<const std::byte> msg);

 private:
  SysResult<std::optional<Timed>> try_start(fwp::Template& t, std::span<const std::byte> msg);

 public:

  fwp::PollLoop& loop() { return loop_; }
  const std::vector<std::unique_ptr<fwp::Template>>& templates() const { return templates_; }
  // The tenants' namespace holders' pids (a per-tenant fixed cost).
  std::vector<pid_t> holder_pids() const;
  // An exec-mode worker of /bin/true, sandboxed as the templates are (tenant 0's id range, its
  // own cgroup "exec"), stdio on /dev/null (held by the Rig): what plumed's spawner is asked for.
  SysResult<fwp::SandboxSpec> exec_spec();
  const std::string& ns_holder() const { return ns_holder_; }  // "": namespaces per template

 private:
  Rig() = default;
  std::string binary_;
  std::unique_ptr<test::TemplateHost> host_;  // cgroups, staging directory, seccomp profile
  fwp::PollLoop loop_;
  std::string ns_holder_;
  std::map<int, std::unique_ptr<fwp::TenantNamespaces>> holders_;  // by tenant index
  std::vector<std::unique_ptr<fwp::Template>> templates_;
  std::map<const fwp::Instance*, int64_t> exited_at_;
  std::string failed_;
  UniqueFd devnull_;  // exec_spec's stdio
  size_t retried_ = 0;
  size_t no_reply_ = 0;
};

}  // namespace plume::bench
