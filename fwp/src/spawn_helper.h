// The spawn helper's side of SpawnService (plume/fwp/spawn_service.h): a fork of the caller runs
// it at once, the plume-spawn binary (fwp/helper/spawn_helper.cc) from its main.
#pragma once

#include <sys/types.h>

#include <cstdint>

#include "plume/fwp/spawner.h"

namespace plume::fwp::detail {

// The helper's only descriptors besides stdio: the socket for spawn(), and the one for
// spawn_async() (answered out of band of spawn(), so a synchronous caller never has to run
// another's callback). An exec'd helper also finds its ledger's memfd on kHelperLedger, which
// it maps and closes.
constexpr int kHelperSyncSocket = 3;
constexpr int kHelperAsyncSocket = 4;
constexpr int kHelperLedger = 5;

// What the helper is doing, in one shared page it and its caller map: the children of a request
// it dies in the middle of are the caller's (CLONE_PARENT), and without their pids the caller
// could never reap them. Written by the helper (and a joining spawn's first child) with __atomic
// stores, the children's pids by the kernel itself (clone3's CLONE_PARENT_SETTID), so that no
// moment between a clone and its record is left; read by the caller once the helper is dead. A
// request is unanswered while `answering` != `begun`; `answering` is written before the answer
// is sent, so a child whose answer may still arrive is never taken for an orphan (dying between
// the two leaves one).
struct SpawnLedger {
  uint64_t begun = 0;
  uint64_t answering = 0;
  SiblingPids pids;  // what request `begun` has cloned so far
};

// Maps the ledger, moves the sockets onto their numbers, closes every other descriptor above
// stdio, says it is ready, then answers requests until either socket closes. Exits if `caller`
// is not (or is no longer) its parent.
[[noreturn]] void run_spawn_helper(int sync_sock, int async_sock, int ledger_fd, pid_t caller);

}  // namespace plume::fwp::detail
