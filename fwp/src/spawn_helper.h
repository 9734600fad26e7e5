// The spawn helper's side of SpawnService (plume/fwp/spawn_service.h): a fork of the caller runs
// it at once, the plume-spawn binary (fwp/helper/spawn_helper.cc) from its main.
#pragma once

#include <sys/types.h>

namespace plume::fwp::detail {

// The helper's only descriptors besides stdio: the socket for spawn(), and the one for
// spawn_async() (answered out of band of spawn(), so a synchronous caller never has to run
// another's callback).
constexpr int kHelperSyncSocket = 3;
constexpr int kHelperAsyncSocket = 4;

// Moves the sockets onto their numbers, closes every other descriptor above stdio, says it is
// ready, then answers requests until either socket closes. Exits if `caller` is not (or is no
// longer) its parent.
[[noreturn]] void run_spawn_helper(int sync_sock, int async_sock, pid_t caller);

}  // namespace plume::fwp::detail
