// Shared fixture for the containment-pipeline tests: real spawns, real namespaces, the default
// seccomp profile and a real CgroupManager under a cgroup parent unique to the test process.
#pragma once

#include <gtest/gtest.h>
#include <sys/types.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "plume/base/unique_fd.h"
#include "plume/fwp/cgroup.h"
#include "plume/fwp/sandbox_spec.h"
#include "plume/fwp/seccomp_profile.h"
#include "plume/fwp/spawn_service.h"
#include "plume/fwp/spawner.h"
#include "support/temp_dir.h"

namespace plume::fwp::test {

using namespace std::chrono_literals;

// The tenant's id range: ids 0..65535 inside are 200000.. outside; the worker runs as 1000 inside.
inline constexpr uint32_t kTenantBase = 200000;
inline constexpr uint32_t kInsideId = 1000;
inline constexpr uint32_t kHostId = kTenantBase + kInsideId;
inline constexpr uint32_t kOtherTenantHostId = 300000 + kInsideId;

// /tmp/plume-<tag>-XXXXXX (searchable by the tenant's host uid), see support/temp_dir.h.
using plume::test::TempDir;

// A started worker with its stdin and (merged) stdout/stderr pipes.
struct Worker {
  Process proc;
  UniqueFd in;   // our end of the worker's stdin
  UniqueFd out;  // our end of the worker's stdout and stderr
  std::string group;  // its cgroup, relative to the test's cgroup parent
  std::string output;

  // Reads until `marker` has appeared in output (true) or timeout/EOF (false).
  bool read_until(std::string_view marker, std::chrono::milliseconds timeout = 5s);
  // Reads until EOF or timeout.
  void read_to_eof(std::chrono::milliseconds timeout = 5s);
  // Waits for exit (pidfd readable) and reaps; nullopt on timeout.
  std::optional<ExitStatus> wait(std::chrono::milliseconds timeout = 5s);
};

class SpawnTest : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;

  // A spec for the default view (host /usr, /bin, ... read-only), running argv.
  SandboxSpec make_spec(std::vector<std::string> argv);
  // The same, with a tenant rootfs (see tenant_rootfs()) as "/".
  SandboxSpec make_tenant_spec(std::vector<std::string> argv);
  // Creates a fresh worker cgroup with `limits`, fills in the spec's stdio and cgroup, and
  // spawns (through `via`'s helper where given), waiting for execve.
  Result<Worker, SpawnError> start(SandboxSpec spec, const CgroupLimits& limits = default_limits(),
                                   SpawnService* via = nullptr);

  static CgroupLimits default_limits();
  static const CompiledFilter& filter();
  CgroupManager& cgroups() { return *cgroups_; }
  const std::string& staging() const { return staging_->path(); }
  // A minimal rootfs of a tenant image: /bin/hostile and (where the host has it) /bin/busybox
  // and /bin/sh, empty /proc, /tmp and /dev, /data/mine (0600, this tenant's) and /data/secret
  // (0600, owned by another tenant's host uid).
  const std::string& tenant_rootfs();

 private:
  std::unique_ptr<TempDir> staging_;
  std::unique_ptr<TempDir> rootfs_;
  std::optional<CgroupManager> cgroups_;
  int groups_ = 0;
};

// The SKIP message when not root.
bool running_as_root();

}  // namespace plume::fwp::test
