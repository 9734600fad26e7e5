// See instance_scope.h. Debian 12's kernel headers predate Landlock scopes: the ABI is spelled
// out here (include/uapi/linux/landlock.h, Linux 6.12).
#include "instance_scope.h"

#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>

namespace plume::libplume {
namespace {

struct RulesetAttr {
  uint64_t handled_access_fs;
  uint64_t handled_access_net;
  uint64_t scoped;
};
constexpr uint64_t kScopeAbstractUnixSocket = 1u << 0;
constexpr uint64_t kScopeSignal = 1u << 1;
constexpr uint32_t kCreateRulesetVersion = 1u << 0;
constexpr long kFirstAbiWithScopes = 6;

#ifndef SYS_landlock_create_ruleset
#define SYS_landlock_create_ruleset 444
#define SYS_landlock_restrict_self 446
#endif

}  // namespace

int make_instance_scope_ruleset() {
  const long abi = ::syscall(SYS_landlock_create_ruleset, nullptr, 0, kCreateRulesetVersion);
  if (abi < 0) return -errno;
  if (abi < kFirstAbiWithScopes) return -EOPNOTSUPP;
  const RulesetAttr attr{0, 0, kScopeAbstractUnixSocket | kScopeSignal};
  const long fd = ::syscall(SYS_landlock_create_ruleset, &attr, sizeof attr, 0u);
  return fd < 0 ? -errno : static_cast<int>(fd);
}

int enter_instance_scope(int ruleset_fd) {
  return ::syscall(SYS_landlock_restrict_self, ruleset_fd, 0u) == 0 ? 0 : errno;
}

}  // namespace plume::libplume
