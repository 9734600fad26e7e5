// libplume's internals: the three roles a libplume binary can play under plumed, and the one
// instance object the public API works on. Not part of the worker ABI.
#pragma once

#include <liburing.h>
#include <sys/time.h>
#include <sys/types.h>
#include <time.h>

#include <cstdint>
#include <optional>

#include "plume/fwp/channel.h"
#include "plume/plume.h"
#include "template_protocol.h"

// The public opaque type.
struct plume_instance {
  plume_role role = PLUME_ROLE_STANDALONE;
  uint64_t id = 0;
  std::optional<plume::fwp::Channel> channel;  // side b; empty when standalone
  uint64_t forked_at_ns = 0;  // the template's clock just before fork()
  bool has_ring = false;
  io_uring ring{};
};

namespace plume::libplume {

inline constexpr int kControlFd = 3;  // the control socket, granted by the controller

// CLOCK_MONOTONIC in ns (a vDSO read, no syscall).
inline uint64_t now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000u + static_cast<uint64_t>(ts.tv_nsec);
}

// The keeper: what the controller spawned (pid 1 of the template's pid namespace). Reads the
// config, forks the template, reaps every process of the namespace and reports their exits,
// restarts the template when the controller asks. Never returns.
[[noreturn]] void run_keeper(int argc, char** argv, const plume_app& app);

// The template: runs init, says hello, then forks instances on request. Never returns.
[[noreturn]] void run_template(int argc, char** argv, const plume_app& app,
                               const fwp::wire::Msg& config, uint32_t generation);

// In a freshly forked instance: drops everything it must not keep, sets up its channel, ring and
// final seccomp filter, announces itself, parks until the first message, runs the handler, exits.
// `park`: none for a start (its first message is already queued); otherwise it will park for a
// while, so it takes its page faults before announcing itself, then sleeps on its channel or,
// spinning, polls it (spinning_park.h).
// `channel`: its memfd, and the mapping of it inherited from the template (staged_channels.h),
// or nullptr to map it here.
// `from_template`: what the template knows that the instance's setup needs (below).
enum class ParkMode { none, asleep, spinning };
// How a pool instance parks: asleep pinned to `cpu` (the supervisor's when it asked; -1: where
// it is) until its doorbell, or spinning.
struct Parking {
  ParkMode mode;
  int cpu;
};
struct InstanceChannel {
  int memfd;
  void* premapped;
};
struct FromTemplate {
  int scope_fd;  // the template's Landlock ruleset (instance_scope.h), or -1 for the filter
  bool trace;    // PLUME_FWP_TRACE was set (read once, not from environ in every child)
};
[[noreturn]] void run_instance(const plume_app& app, const fwp::wire::Msg& config,
                               uint64_t instance_id, InstanceChannel channel,
                               FromTemplate from_template, Parking parking, uint64_t forked_at_ns);

// Reaps every exited child (after draining the SIGCHLD signalfd) and reports each to the
// controller: `exited`, or `template_exited` for pid `tmpl`. Returns whether tmpl was among them.
bool reap_children(int sfd, pid_t tmpl, uint32_t generation);

// Writes a short diagnostic to stderr (no allocation, async-signal-safe).
void diag(const char* what, int err);

}  // namespace plume::libplume
