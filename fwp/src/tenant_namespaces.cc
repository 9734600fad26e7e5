#include "plume/fwp/tenant_namespaces.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <thread>

#include "plume/fwp/spawn_service.h"
#include "plume/fwp/spawner.h"

namespace plume::fwp {

SysResult<std::unique_ptr<TenantNamespaces>> TenantNamespaces::create(SandboxSpec sandbox,
                                                                      const std::string& holder_binary,
                                                                      SpawnService* spawner) {
  std::unique_ptr<TenantNamespaces> ns(new TenantNamespaces());
  int pipe[2];
  if (::pipe2(pipe, O_CLOEXEC) != 0) return fail(sys_error("pipe2", "namespace holder"));
  UniqueFd theirs(pipe[0]);
  ns->release_.reset(pipe[1]);
  UniqueFd devnull(::open("/dev/null", O_RDWR | O_CLOEXEC));
  if (!devnull) return fail(sys_error("open", "/dev/null"));
  UniqueFd binary(::open(holder_binary.c_str(), O_RDONLY | O_CLOEXEC));
  if (!binary) return fail(sys_error("open", holder_binary));
  // Executed through its fd (granted as fd 3), so that no root needs to contain it.
  sandbox.argv = {"/proc/self/fd/3"};
  sandbox.env = {"PATH=/usr/bin:/bin"};
  sandbox.granted_fds = {theirs.get(), devnull.get(), 2, binary.get()};
  sandbox.join_namespaces_of = -1;
  auto proc = wait_for_exec(spawn_via(spawner, sandbox));
  if (!proc) return fail(plain_error("namespace holder", proc.error().message()));
  ns->pid_ = proc->pid;
  ns->pidfd_ = std::move(proc->pidfd);
  return ns;
}

TenantNamespaces::~TenantNamespaces() {
  release_.reset();  // the holder exits on EOF; SIGKILL in case it cannot read any more
  if (!pidfd_) return;
  ::syscall(SYS_pidfd_send_signal, pidfd_.get(), SIGKILL, nullptr, 0);
  // Reaped off the caller's thread: a dying namespace init waits until every process of its
  // namespace is reaped, and the templates' keepers are the caller's own children (CLONE_PARENT),
  // which its loop reaps only after this returns. Waiting here would deadlock.
  std::thread([fd = std::move(pidfd_)] {
    siginfo_t info{};
    while (::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(fd.get()), &info, WEXITED) != 0 &&
           errno == EINTR) {
    }
  }).detach();
}

bool TenantNamespaces::alive() const {
  if (!pidfd_) return false;
  pollfd p{pidfd_.get(), POLLIN, 0};
  return ::poll(&p, 1, 0) == 0;
}

}  // namespace plume::fwp
