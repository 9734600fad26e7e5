// Shared fixture for the fast-path tests: a real template (keeper + template) of a libplume app,
// spawned through the containment pipeline with the default seccomp profile, under a cgroup
// parent unique to the test process, driven by a PollLoop.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "plume/fwp/cgroup.h"
#include "plume/fwp/template.h"
#include "support/template_host.h"

namespace plume::fwp::test {

using namespace std::chrono_literals;

bool running_as_root();

class FastTest : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;

  // A spec for `binary` (host path) with the default view as rootfs, the test's uid range, the
  // template in cgroup "t/tpl" and instance groups (own mode) under "t".
  TemplateSpec make_spec(const std::string& binary, bool io_uring = false);
  // Starts it and runs the loop until hello (asserts on failure).
  Template& start(TemplateSpec spec);
  // Starts the echo app with `refill_delay` and runs until its channels made ahead are all made.
  Template& start_echo_with_spare_channels(std::chrono::milliseconds refill_delay);
  // Runs the loop until pred, for up to timeout.
  bool run_until(const std::function<bool()>& pred, std::chrono::milliseconds timeout = 10s);

  // Sends `cmd` to the instance and returns its reply ("" on timeout), pumping the loop.
  std::string ask(Instance& inst, const std::string& cmd, std::chrono::milliseconds timeout = 5s);
  // Receives the instance's next reply, pumping the loop.
  std::string reply(Instance& inst, std::chrono::milliseconds timeout = 5s);
  // Starts an instance with `first` and returns it.
  Instance& start_instance(const std::string& first);
  // Runs until the instance has exited.
  const InstanceExit& wait_exit(Instance& inst, std::chrono::milliseconds timeout = 10s);

  CgroupManager& cgroups() { return host_->cgroups(); }
  [[noreturn]] void fatal();
  PollLoop loop_;
  std::unique_ptr<Template> tmpl_;
  std::vector<uint64_t> exited_;  // instance ids reported by the instance_exited event
  int template_exits_ = 0;
  int template_readies_ = 0;
  std::string failed_;

 private:
  std::unique_ptr<plume::test::TemplateHost> host_;
};

// The value after `key` in a probe reply ("pid=12 ppid=3" → field(r, "pid=") == "12"), up to the
// next space or newline; "<missing KEY>" if absent.
std::string field(const std::string& text, const std::string& key);
// Test-name suffix for the fence parameter: "SeccompFilter" or "LandlockScope".
std::string fence_name(const ::testing::TestParamInfo<InstanceIsolation>& p);

// Whether this process may lend a template RLIMIT_NICE 20 (holds CAP_SYS_RESOURCE, or has it
// already): what refill_nice and spinning standbys need.
bool nice_limit_lendable();
// The state letter of /proc/<pid>/stat ('R', 'S', ...), '?' if it cannot be read.
char proc_state(pid_t pid);

std::string probe_path();
std::string echo_path();
std::string kvindex_path();
std::string liar_path();

}  // namespace plume::fwp::test
