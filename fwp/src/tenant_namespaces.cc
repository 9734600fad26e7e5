#include "plume/fwp/tenant_namespaces.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <thread>

#include "plume/fwp/poller.h"
#include "plume/fwp/spawn_service.h"

namespace plume::fwp {

struct TenantNamespaces::Request {
  SandboxSpec sandbox;
  UniqueFd theirs, devnull, binary;  // granted to the holder; open until the request is sent
};

SysResult<TenantNamespaces::Request> TenantNamespaces::make_request(SandboxSpec sandbox,
                                                                    const std::string& holder_binary,
                                                                    TenantNamespaces& ns) {
  Request r;
  int pipe[2];
  if (::pipe2(pipe, O_CLOEXEC) != 0) return fail(sys_error("pipe2", "namespace holder"));
  r.theirs.reset(pipe[0]);
  ns.release_.reset(pipe[1]);
  r.devnull.reset(::open("/dev/null", O_RDWR | O_CLOEXEC));
  if (!r.devnull) return fail(sys_error("open", "/dev/null"));
  r.binary.reset(::open(holder_binary.c_str(), O_RDONLY | O_CLOEXEC));
  if (!r.binary) return fail(sys_error("open", holder_binary));
  // Executed through its fd (granted as fd 3), so that no root needs to contain it.
  sandbox.argv = {"/proc/self/fd/3"};
  sandbox.env = {"PATH=/usr/bin:/bin"};
  sandbox.granted_fds = {r.theirs.get(), r.devnull.get(), 2, r.binary.get()};
  sandbox.join_namespaces_of = -1;
  r.sandbox = std::move(sandbox);
  return r;
}

SysResult<std::unique_ptr<TenantNamespaces>> TenantNamespaces::create(SandboxSpec sandbox,
                                                                      const std::string& holder_binary,
                                                                      SpawnService* spawner) {
  std::unique_ptr<TenantNamespaces> ns(new TenantNamespaces());
  auto request = make_request(std::move(sandbox), holder_binary, *ns);
  if (!request) return fail(request.error());
  auto proc = wait_for_exec(spawn_via(spawner, request->sandbox));
  if (!proc) return fail(plain_error("namespace holder", proc.error().message()));
  ns->pid_ = proc->pid;
  ns->pidfd_ = std::move(proc->pidfd);
  return ns;
}

SysResult<std::unique_ptr<TenantNamespaces>> TenantNamespaces::start(SandboxSpec sandbox,
                                                                     const std::string& holder_binary,
                                                                     SpawnService* spawner, Poller& poller) {
  std::unique_ptr<TenantNamespaces> ns(new TenantNamespaces());
  auto request = make_request(std::move(sandbox), holder_binary, *ns);
  if (!request) return fail(request.error());
  ns->state_ = State::starting;
  ns->spawner_ = spawner;
  ns->poller_ = &poller;
  if (spawner == nullptr) {
    ns->adopt(spawn(request->sandbox));  // no waiter yet: nobody is called
    return ns;
  }
  TenantNamespaces* self = ns.get();
  auto sent = spawner->spawn_async(request->sandbox, [self](Result<Process, SpawnError> holder) {
    self->request_ = 0;
    self->adopt(std::move(holder));
  });
  ns->request_ = sent.ticket;
  if (sent.answered) ns->adopt(std::move(*sent.answered));  // no waiter yet: nobody is called
  return ns;
}

void TenantNamespaces::adopt(Result<Process, SpawnError> holder) {
  if (!holder) return settle(State::failed, "namespace holder: " + holder.error().message());
  pid_ = holder->pid;
  pidfd_ = std::move(holder->pidfd);
  status_fd_ = std::move(holder->status_fd);
  sync_fd_ = std::move(holder->sync_fd);
  // Its exec closes the status pipe (close-on-exec); a step that fails first writes its record.
  poller_->watch(status_fd_.get(), [this] { on_exec_status(); });
}

void TenantNamespaces::on_exec_status() {
  if (!pidfd_readable(status_fd_.get())) return;  // spurious: never block the loop
  poller_->unwatch(status_fd_.get());
  // Readable: this reads the outcome without waiting, and a holder that failed is reaped.
  auto ran = wait_for_exec(Process{pid_, std::move(pidfd_), std::move(status_fd_), std::move(sync_fd_)});
  if (!ran) return settle(State::failed, "namespace holder: " + ran.error().message());
  pidfd_ = std::move(ran->pidfd);
  settle(State::ready, "");
}

void TenantNamespaces::settle(State state, std::string error) {
  state_ = state;
  error_ = std::move(error);
  if (state_ == State::failed) release_.reset();
  // One at a time from the map: a waiter may forget() others (a Template it ends), or itself.
  while (!waiters_.empty()) {
    auto node = waiters_.extract(waiters_.begin());
    node.mapped()();
  }
}

TenantNamespaces::WaiterId TenantNamespaces::when_settled(std::function<void()> settled) {
  const WaiterId id = next_waiter_++;
  waiters_.emplace(id, std::move(settled));
  return id;
}

void TenantNamespaces::forget(WaiterId id) { waiters_.erase(id); }

TenantNamespaces::~TenantNamespaces() {
  // Still being cloned: the helper's answer finds nobody, and the holder is ended then.
  if (request_ != 0 && spawner_ != nullptr) spawner_->cancel(request_);
  if (status_fd_ && poller_ != nullptr) poller_->unwatch(status_fd_.get());
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
  if (state_ == State::starting) return true;
  if (state_ == State::failed || !pidfd_) return false;
  return !pidfd_readable(pidfd_.get());
}

}  // namespace plume::fwp
