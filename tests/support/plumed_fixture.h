// A real plumed for end-to-end tests: started from the build tree in a private temp runtime dir with
// a unique cgroup parent and a random admin token, talked to over its Unix socket, and stopped (or
// killed) by the test. Also runs the `plume` CLI binary and captures what it prints.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "client.h"
#include "support/temp_dir.h"

namespace plume::test {

using Reply = cli::HttpReply;
using namespace std::chrono_literals;

// Binaries under test (from the build tree).
std::string plumed_binary();  // PLUME_BINARY_DIR "/kernel/plumed"
std::string plume_cli_binary();  // PLUME_BINARY_DIR "/kernel/cli/plume"
// "plume-test-<pid>-<n>": unique per process and call.
std::string unique_cgroup_parent();
// 32 random hex characters.
std::string random_token();
// plumed's cgroup directory for the parent `parent`, one per hierarchy, as plumed itself finds
// the host's layout (fwp::CgroupManager): /sys/fs/cgroup/<parent> on cgroup v2, one per v1
// hierarchy otherwise. Empty when the layout is unusable.
std::vector<std::string> cgroup_parent_dirs(const std::string& parent);
// Those of cgroup_parent_dirs(parent) that exist now, and every directory below them.
std::vector<std::string> cgroup_dirs_under(const std::string& parent);
// mounts_under(dir) comes from support/temp_dir.h.

// Kills every process in, then removes, the cgroup tree <ctrl>/<parent> of every controller.
void remove_cgroup_tree(const std::string& parent);

// TempDir (a private /tmp directory, removed with its mounts detached) comes from support/temp_dir.h.

struct PlumedOptions {
  std::string binary;                   // default: plumed_binary() (an installed one, say)
  std::string config_toml;              // when set: written to <root>/plumed.toml and passed via --config
  std::vector<std::string> extra_args;  // appended to the command line
  std::vector<std::string> extra_env;   // "NAME=value", added to the test's environment
  std::string runtime_dir;              // default: <root>/run (reuse one for restart tests)
  std::string cgroup_parent;            // default: unique_cgroup_parent()
  std::string admin_token;              // default: random_token()
  std::chrono::milliseconds ready_timeout = 15s;
};

class Plumed {
 public:
  explicit Plumed(PlumedOptions options = {});
  ~Plumed();  // kill -9 if still running, remove its cgroups and temp dir
  Plumed(const Plumed&) = delete;
  Plumed& operator=(const Plumed&) = delete;

  // Starts plumed and waits (bounded) until GET /v1/health answers 200.
  testing::AssertionResult start();
  // Starts plumed and returns at once, for a test that waits on plumed in its own way.
  testing::AssertionResult launch();
  // Starts plumed expecting it to exit by itself; returns its exit code (nullopt: still running at
  // the deadline, it is then killed).
  std::optional<int> start_expect_exit(std::chrono::milliseconds timeout = 10s);

  // One request; a transport failure comes back as status 0 with the error in body.
  Reply request(const std::string& method, const std::string& target, const std::string& token,
                const std::string& body = {}, std::chrono::milliseconds timeout = 20s) const;
  Reply admin(const std::string& method, const std::string& target, const std::string& body = {},
              std::chrono::milliseconds timeout = 20s) const {
    return request(method, target, admin_token_, body, timeout);
  }
  Reply raw(const std::string& bytes, bool shutdown_write = true, std::chrono::milliseconds timeout = 10s) const;

  // Signals plumed and waits for it: its exit code, 128+signal when a signal ended it, or nullopt
  // when it did not end before `timeout` (it is then killed with SIGKILL).
  std::optional<int> stop(int sig = SIGTERM, std::chrono::milliseconds timeout = 15s);
  void kill9();
  bool running() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }

  const std::string& root() const { return root_.path(); }
  const std::string& runtime_dir() const { return runtime_dir_; }
  std::string socket() const { return runtime_dir_ + "/plumed.sock"; }
  const std::string& cgroup_parent() const { return cgroup_parent_; }
  const std::string& admin_token() const { return admin_token_; }
  std::string stderr_text() const;  // everything plumed wrote to stderr (all starts)

 private:
  std::string spawn();  // "" or an error
  std::optional<int> wait_exit(std::chrono::milliseconds timeout);

  PlumedOptions options_;
  TempDir root_;
  std::string runtime_dir_, cgroup_parent_, admin_token_, stderr_path_;
  pid_t pid_ = -1;
  int pidfd_ = -1;
};

struct CliResult {
  int exit_code = -1;  // 128+signal if it died of one; -1 when it timed out
  std::string out, err;
};
// Runs PLUME_BINARY_DIR/kernel/cli/plume with `args` (env: PLUME_* cleared, then `env` added).
CliResult run_cli(const std::vector<std::string>& args, const std::vector<std::string>& env = {},
                  std::chrono::milliseconds timeout = 30s);

// Parses a body as JSON (discarded value when it is not).
nlohmann::json json_of(const Reply& r);

// A rootfs with busybox-static as bin/busybox and applets linked beside it (sh, echo, cat, ...).
// Returns "" or an error.
std::string make_busybox_rootfs(const std::string& dir);

}  // namespace plume::test
