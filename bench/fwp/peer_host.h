// bench/spawn's local peers (fork_exec, vfork_exec, posix_spawn, bwrap, crun), started from a
// process of their own: fwp_bench's process is the supervisor under test, and fork_exec forks its
// caller. After that fork every private page of the supervisor was write-protected, and its next
// start paid the copy-on-write faults (fwp_spin right after fork_exec: ~6 µs against ~1 µs); the
// supervisor's mappings (a channel per parked instance) made fork_exec's own fork dearer too.
// The host is forked before any template exists, as small as the bench process is then. It takes
// t0, t1 and t2 itself (CLOCK_MONOTONIC is the same clock in every process), so a request's round
// trip to it is not timed.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "peers.h"
#include "plume/base/sys_error.h"
#include "plume/base/unique_fd.h"

namespace plume::bench {

class LocalPeerHost {
 public:
  // Forks the host, which makes the local peers `names` over `env` (make_local_peer) and says
  // whether it could. It inherits env's timestamp pipe and the caller's mount namespace.
  static SysResult<std::unique_ptr<LocalPeerHost>> start(const std::vector<std::string>& names,
                                                         const PeerEnv& env);
  ~LocalPeerHost();  // closes the socket (the host exits on EOF) and reaps it
  LocalPeerHost(const LocalPeerHost&) = delete;
  LocalPeerHost& operator=(const LocalPeerHost&) = delete;

  // A peer whose starts run in the host; nullptr unless `name` was one of start()'s names.
  std::unique_ptr<Peer> peer(const std::string& name);

 private:
  class Proxy;
  LocalPeerHost(pid_t pid, UniqueFd sock, std::vector<std::string> names)
      : pid_(pid), sock_(std::move(sock)), names_(std::move(names)) {}
  SysResult<Sample> start_in_host(uint32_t index, const std::string& name);
  pid_t pid_;
  UniqueFd sock_;
  std::vector<std::string> names_;
};

}  // namespace plume::bench
