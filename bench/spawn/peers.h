// The peers that bench/spawn compares: each starts the same static binary (apps/first_instruction)
// once per call and reports three CLOCK_MONOTONIC readings:
//   t0  just before the start call (fork, posix_spawn, the HTTP POST ...)
//   t1  the child's first instruction (its own clock reading, sent back on fd 3 or its stdout)
//   t2  just after the launcher observed the exit (waitpid returned, or plumed's wait API answered)
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "plume/base/sys_error.h"

namespace plume::bench {

struct Sample {
  int64_t t0_ns = 0;
  int64_t t1_ns = 0;
  int64_t t2_ns = 0;
};

int64_t monotonic_ns();

class Peer {
 public:
  virtual ~Peer() = default;
  virtual const std::string& name() const = 0;
  virtual SysResult<Sample> start_once() = 0;
};

// Where the peers find what they start. All paths absolute.
struct PeerEnv {
  std::string binary;      // apps/first_instruction on the host
  std::string rootfs;      // a directory holding only /first_instruction (+ empty mount points)
  std::string bundle;      // an OCI bundle whose config.json runs /first_instruction from `rootfs`
  std::string crun_root;   // crun --root (its state directory)
  std::string bwrap_path;  // absolute path of bwrap
  std::string crun_path;   // absolute path of crun
  int timestamp_fd = -1;   // read end of the pipe whose write end every local child gets as fd 3
};

// Local peers: fork_exec, vfork_exec, posix_spawn, bwrap, crun. Nullptr for an unknown name.
std::unique_ptr<Peer> make_local_peer(const std::string& name, const PeerEnv& env);
// Whether make_local_peer knows `name`.
bool is_local_peer(const std::string& name);

// Plume exec mode through plumed's control API (see plume_peer.cc).
struct PlumeOptions {
  std::string socket;      // plumed's control socket
  std::string admin_token;
  std::string tenant = "demo";
  std::string rootfs;      // registered as a temporary image
  int ready_timeout_ms = 10000;
};
SysResult<std::unique_ptr<Peer>> make_plume_peer(const PlumeOptions& options);
// The same API path for a featherweight instance: registers `handler` (bench/fwp's first_handler,
// a libplume app) as an fwp image with a warm pool of `pool_size`, `spinning_standbys` of them
// polling (fwp.spinning_standbys), and starts instances with one input message. Its name is
// "plume_fwp", or "plume_fwp_spin" with spinning standbys; *pool_hits counts the starts the API
// reported as taken from the pool (the others forked: the pool had not refilled since the last
// start).
SysResult<std::unique_ptr<Peer>> make_plume_fwp_peer(const PlumeOptions& options, const std::string& handler,
                                                     size_t pool_size, size_t* pool_hits,
                                                     size_t spinning_standbys = 0);

// The shared start environment (peer_env.cc). make_scratch creates a 0755 scratch directory in
// /tmp holding rootfs/ (only /first_instruction, a copy of `binary`, and empty mount points),
// bundle/config.json for crun and crun-state/, fills env's paths and returns the directory.
SysResult<std::string> make_scratch(const std::string& binary, PeerEnv& env);
// crun refuses this host's hybrid cgroup layout: moves this process into a private mount
// namespace without the empty v2 mount at /sys/fs/cgroup/unified (a no-op elsewhere).
SysResult<void> hide_unified_cgroup();
// A pipe whose write end becomes fd 3 of this process (inherited by every local child); returns
// the non-blocking, close-on-exec read end.
SysResult<int> make_timestamp_pipe();

// The absolute path of an executable `tool` (bwrap, crun): the first match in $PATH's
// directories, then in /usr/local/sbin, /usr/local/bin, /usr/sbin, /usr/bin, /sbin and /bin
// (where sudo's or a service's short PATH leaves them out); empty if none.
std::string find_tool(const std::string& tool);

}  // namespace plume::bench
