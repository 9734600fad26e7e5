// plume-spawn: the spawn helper as a binary of its own (plume/fwp/spawn_service.h), exec'd by
// SpawnService::start(binary) with its two sockets on fds 3 and 4 and its ledger on fd 5.
// Exec'd, it is as small as this binary whatever its caller has grown to, and a dead one can be
// replaced.
//   plume-spawn <caller pid>
#include <cstdlib>
#include <cstring>

#include "spawn_helper.h"

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  char* end = nullptr;
  const long caller = std::strtol(argv[1], &end, 10);
  if (end == argv[1] || *end != '\0' || caller <= 0) return 2;
  namespace detail = plume::fwp::detail;
  detail::run_spawn_helper(detail::kHelperSyncSocket, detail::kHelperAsyncSocket, detail::kHelperLedger,
                           static_cast<pid_t>(caller));
}
