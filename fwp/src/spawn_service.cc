// SpawnService (spawn_service.h): the caller's end of the spawn helper's socket, and the helper.
#include "plume/fwp/spawn_service.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "plume/base/log.h"
#include "spawn_helper.h"
#include "spawn_wire.h"

namespace plume::fwp {
namespace {

using detail::kHelperAsyncSocket;
using detail::kHelperSyncSocket;
constexpr size_t kMaxAnswerBytes = 4096;
// How long an exec'd helper has to say it is ready (it loads its libraries first).
constexpr int kHelloTimeoutMs = 5000;

int64_t monotonic_ms() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1'000'000;
}

// A child of ours given up on: SIGKILL, then its end waited for. Whether it was reaped.
bool kill_and_reap(int pidfd) {
  ::syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, nullptr, 0);
  return reap(pidfd, /*block=*/true).ok();
}

// A spec may carry a seccomp program of up to 512 KiB, more than a socket buffer holds by default.
void widen_send_buffer(int sock) {
  const int size = static_cast<int>(detail::kMaxRecordBytes) * 2;
  if (::setsockopt(sock, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof size) != 0) {
    (void)::setsockopt(sock, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);  // capped at wmem_max
  }
}

detail::Answer failure_answer(const SpawnError& e) {
  detail::Answer a;
  a.step = static_cast<uint8_t>(e.step);
  a.err = e.err;
  a.detail = e.detail;
  return a;
}

// Answers one request read from `sock`. Its buffers are the caller's, reused, their capacity
// set aside before the first: after each clone this process's pages are shared copy-on-write with
// the child until it execs, and every page written before the answer is sent costs a fault
// (12–27 µs here) that the requester waits for.
struct HelperBuffers {
  detail::Record request;
  std::vector<UniqueFd> to_reap;
  std::vector<int> fds;
  std::vector<char> answer;
  HelperBuffers() {
    to_reap.reserve(4);
    fds.reserve(8);
    answer.reserve(4096);
  }
};

// Returns false when the socket is closed (or can no longer be answered on).
bool serve_one(int sock, HelperBuffers& b, detail::SpawnLedger& ledger) {
  const int err = detail::recv_record(sock, detail::kMaxRecordBytes, b.request, /*nonblocking=*/false);
  if (err == EPIPE || err == ECONNRESET) return false;
  detail::Answer answer;
  std::optional<Process> proc;
  SandboxSpec spec;
  CompiledFilter filter;
  if (err != 0) {
    answer.step = static_cast<uint8_t>(Step::clone);
    answer.err = err;
    answer.detail = "spawn helper: receiving the request";
  } else if (auto bad = detail::decode_spec(b.request, spec, filter)) {
    answer.step = static_cast<uint8_t>(Step::clone);
    answer.err = EINVAL;
    answer.detail = "spawn helper: " + *bad;
  } else {
    // What this request clones is recorded from here on (spawn_helper.h).
    const uint64_t request = __atomic_load_n(&ledger.begun, __ATOMIC_RELAXED) + 1;
    __atomic_store_n(&ledger.pids.child, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&ledger.pids.worker, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&ledger.begun, request, __ATOMIC_RELEASE);
    bool released = true;
    auto started = detail::spawn_as_sibling(spec, b.to_reap, released, &ledger.pids);
    __atomic_store_n(&ledger.answering, request, __ATOMIC_RELEASE);
    if (started) {
      proc.emplace(std::move(*started));
      answer.ok = true;
      answer.pid = proc->pid;
      answer.released = released;
    } else {
      answer = failure_answer(started.error());
    }
  }
  b.fds.clear();
  if (proc) b.fds.insert(b.fds.end(), {proc->pidfd.get(), proc->status_fd.get(), proc->sync_fd.get()});
  for (const UniqueFd& fd : b.to_reap) b.fds.push_back(fd.get());
  answer.reap = static_cast<uint32_t>(b.to_reap.size());
  detail::encode_answer(answer, b.answer);
  const int sent = detail::send_record(sock, b.answer, b.fds);
  b.request.fds.clear();  // the spec's descriptors: the child has its copies
  b.to_reap.clear();
  // Unanswered, the caller sees the socket close, and reaps the child from the ledger. (Its
  // release pipe gone with this Process, the child would report the parent gone and exit.)
  return sent == 0;
}

}  // namespace

namespace detail {

// The helper: one request at a time from either socket (the synchronous one first), until
// either closes. It allocates (a fork of a possibly multi-threaded caller, which glibc's fork
// makes safe for malloc, or plume-spawn) but logs nothing: a forked one's logger and its locks
// are the caller's.
[[noreturn]] void run_spawn_helper(int sync_sock, int async_sock, int ledger_fd, pid_t caller) {
  if (::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0 || ::getppid() != caller) ::_exit(1);
  void* page = ::mmap(nullptr, sizeof(SpawnLedger), PROT_READ | PROT_WRITE, MAP_SHARED, ledger_fd, 0);
  if (page == MAP_FAILED) ::_exit(1);
  auto* ledger = static_cast<SpawnLedger*>(page);
  // Onto fds 3 and 4 (whatever numbers they had: dup first, then close everything above 4, the
  // ledger's descriptor too: its mapping stays).
  const int sync_tmp = ::fcntl(sync_sock, F_DUPFD_CLOEXEC, kHelperAsyncSocket + 1);
  const int async_tmp = ::fcntl(async_sock, F_DUPFD_CLOEXEC, kHelperAsyncSocket + 1);
  if (sync_tmp < 0 || async_tmp < 0) ::_exit(1);
  if (::dup3(sync_tmp, kHelperSyncSocket, O_CLOEXEC) < 0 || ::dup3(async_tmp, kHelperAsyncSocket, O_CLOEXEC) < 0) ::_exit(1);
  ::close_range(kHelperAsyncSocket + 1, ~0U, 0);
  (void)::prctl(PR_SET_NAME, "plume-spawn", 0, 0, 0);
  detail::Answer ready;
  ready.ok = true;
  ready.pid = ::getpid();
  HelperBuffers buffers;
  detail::encode_answer(ready, buffers.answer);
  if (detail::send_record(kHelperSyncSocket, buffers.answer, {}) != 0) ::_exit(1);
  for (;;) {
    pollfd p[2] = {{kHelperSyncSocket, POLLIN, 0}, {kHelperAsyncSocket, POLLIN, 0}};
    if (::poll(p, 2, -1) < 0) {
      if (errno == EINTR) continue;
      ::_exit(1);
    }
    for (const pollfd& s : p) {
      if (s.revents == 0) continue;
      if (!serve_one(s.fd, buffers, *ledger)) ::_exit(0);
    }
  }
}

}  // namespace detail

namespace {

// A descriptor numbered above the helper's three, for posix_spawn's dup2s: one of them might
// otherwise already sit on the number the other is moved to.
SysResult<UniqueFd> above_helper_numbers(UniqueFd fd) {
  if (fd.get() > detail::kHelperLedger) return fd;
  UniqueFd moved(::fcntl(fd.get(), F_DUPFD_CLOEXEC, detail::kHelperLedger + 1));
  if (!moved) return fail(sys_error("fcntl", "F_DUPFD_CLOEXEC for the spawn helper"));
  return moved;
}

// plume-spawn, with `sync_sock`, `async_sock` and the ledger's memfd on its fds 3, 4 and 5 and
// nothing else of ours (everything else is close-on-exec, and the helper closes anything above 4
// once it has mapped the ledger). The caller's blocked signals and ignored ones are not the
// helper's.
SysResult<pid_t> exec_helper(const std::string& binary, UniqueFd sync_sock, UniqueFd async_sock, UniqueFd ledger) {
  auto sync_high = above_helper_numbers(std::move(sync_sock));
  if (!sync_high) return fail(sync_high.error());
  auto async_high = above_helper_numbers(std::move(async_sock));
  if (!async_high) return fail(async_high.error());
  auto ledger_high = above_helper_numbers(std::move(ledger));
  if (!ledger_high) return fail(ledger_high.error());
  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  ::posix_spawn_file_actions_init(&actions);
  ::posix_spawnattr_init(&attr);
  ::posix_spawn_file_actions_adddup2(&actions, sync_high->get(), kHelperSyncSocket);
  ::posix_spawn_file_actions_adddup2(&actions, async_high->get(), kHelperAsyncSocket);
  ::posix_spawn_file_actions_adddup2(&actions, ledger_high->get(), detail::kHelperLedger);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  ::posix_spawnattr_setsigmask(&attr, &none);
  ::posix_spawnattr_setsigdefault(&attr, &all);
  ::posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  const std::string caller = std::to_string(::getpid());
  char* argv[] = {const_cast<char*>("plume-spawn"), const_cast<char*>(caller.c_str()), nullptr};
  pid_t pid = -1;
  const int err = ::posix_spawn(&pid, binary.c_str(), &actions, &attr, argv, environ);
  ::posix_spawn_file_actions_destroy(&actions);
  ::posix_spawnattr_destroy(&attr);
  if (err != 0) return fail(SysError{"posix_spawn", err, binary});
  return pid;
}

}  // namespace

SysResult<std::unique_ptr<SpawnService>> SpawnService::start() {
  std::unique_ptr<SpawnService> service(new SpawnService());
  if (auto ok = service->launch(); !ok) return fail(ok.error());
  return service;
}

SysResult<std::unique_ptr<SpawnService>> SpawnService::start(std::string helper_binary) {
  std::unique_ptr<SpawnService> service(new SpawnService());
  service->helper_binary_ = std::move(helper_binary);
  if (auto ok = service->launch(); !ok) return fail(ok.error());
  return service;
}

SysResult<void> SpawnService::launch() {
  int sync_pair[2], async_pair[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sync_pair) != 0)
    return fail(sys_error("socketpair", "spawn helper"));
  UniqueFd ours(sync_pair[0]), theirs(sync_pair[1]);
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, async_pair) != 0)
    return fail(sys_error("socketpair", "spawn helper"));
  UniqueFd ours_async(async_pair[0]), theirs_async(async_pair[1]);
  for (int fd : {ours.get(), theirs.get(), ours_async.get(), theirs_async.get()}) widen_send_buffer(fd);
  // Both ends block on send: a burst of requests the helper cannot keep up with holds the caller
  // back (about 200 of a few KiB fit in the buffer) instead of failing. Answers are read with
  // MSG_DONTWAIT when the caller's loop says they are there.
  UniqueFd ledger_fd(::memfd_create("plume-spawn-ledger", MFD_CLOEXEC));
  if (!ledger_fd) return fail(sys_error("memfd_create", "spawn ledger"));
  if (::ftruncate(ledger_fd.get(), sizeof(detail::SpawnLedger)) != 0) return fail(sys_error("ftruncate", "spawn ledger"));
  void* page = ::mmap(nullptr, sizeof(detail::SpawnLedger), PROT_READ | PROT_WRITE, MAP_SHARED, ledger_fd.get(), 0);
  if (page == MAP_FAILED) return fail(sys_error("mmap", "spawn ledger"));
  std::unique_ptr<void, void (*)(void*)> ledger(page, [](void* p) { ::munmap(p, sizeof(detail::SpawnLedger)); });
  pid_t pid = -1;
  if (!helper_binary_.empty()) {
    auto spawned = exec_helper(helper_binary_, std::move(theirs), std::move(theirs_async), std::move(ledger_fd));
    if (!spawned) return fail(spawned.error());
    pid = *spawned;
  } else {
    const pid_t caller = ::getpid();
    // glibc's fork, not a raw clone: it leaves malloc usable in the child of a threaded caller.
    pid = ::fork();
    if (pid < 0) return fail(sys_error("fork", "spawn helper"));
    if (pid == 0) {
      (void)ours.release();
      (void)ours_async.release();
      detail::run_spawn_helper(theirs.get(), theirs_async.get(), ledger_fd.get(), caller);
    }
    theirs.reset();
    theirs_async.reset();
    ledger_fd.reset();
  }
  UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  if (!pidfd) {
    const SysError e = sys_error("pidfd_open", "spawn helper");
    ::kill(pid, SIGKILL);
    int status;
    (void)::waitpid(pid, &status, 0);
    return fail(e);
  }
  // Its first record says it is set up (holding no descriptor of ours): a spawn never races that.
  // A helper that dies first closes its end; one that hangs is given up on.
  auto give_up = [&](SysError e) -> SysResult<void> {
    (void)kill_and_reap(pidfd.get());
    return fail(std::move(e));
  };
  pollfd hello_ready{ours.get(), POLLIN, 0};
  const int polled = ::poll(&hello_ready, 1, kHelloTimeoutMs);
  if (polled <= 0) return give_up(SysError{"poll", polled < 0 ? errno : ETIMEDOUT, "the spawn helper's first record"});
  detail::Record hello;
  detail::Answer ready;
  int err = detail::recv_record(ours.get(), kMaxAnswerBytes, hello, /*nonblocking=*/false);
  if (err == 0 && (detail::decode_answer(hello.bytes, ready) || !ready.ok || ready.pid != pid)) err = EPROTO;
  if (err != 0) return give_up(SysError{"recvmsg", err, "the spawn helper's first record"});
  sock_ = std::move(ours);
  async_sock_ = std::move(ours_async);
  helper_pid_ = pid;
  helper_pidfd_ = std::move(pidfd);
  if (ledger_ != nullptr) ::munmap(ledger_, sizeof(detail::SpawnLedger));
  ledger_ = static_cast<detail::SpawnLedger*>(ledger.release());
  launched_at_ms_ = monotonic_ms();
  gone_ = false;
  return {};
}

SpawnService::~SpawnService() {
  sock_.reset();  // the helper's EOF
  async_sock_.reset();
  if (helper_pidfd_) (void)reap(helper_pidfd_.get(), /*block=*/true);
  if (ledger_ != nullptr) ::munmap(ledger_, sizeof(detail::SpawnLedger));
}

bool SpawnService::helper_alive() const {
  return helper_pidfd_ && !pidfd_readable(helper_pidfd_.get());
}

void SpawnService::helper_gone(const char* why, int err) {
  if (gone_) return;
  gone_ = true;
  gone_errno_ = err;
  log::error("fwp.spawn_helper.gone",
             {{"pid", helper_pid_}, {"why", why}, {"errno", err},
              {"then", helper_binary_.empty() ? "spawning in this process, which copies its address space per worker"
                                              : "starting a new one"}});
  // The asynchronous socket stays open, at end of file now: the caller's loop, still watching
  // it, calls on_answers(), which fails what was pending and replaces the helper; see gone().
  sock_.reset();
  if (helper_pidfd_) {
    (void)kill_and_reap(helper_pidfd_.get());
    helper_pidfd_.reset();
  }
  reap_orphans();
}

namespace {

// Kills and reaps `pid` if it is this process's child (waitid refuses any other with ECHILD, so
// nobody else's process is ever signalled). Returns whether it was.
bool kill_and_reap_child(pid_t pid) {
  UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  if (!pidfd) return false;
  siginfo_t info{};
  if (::syscall(SYS_waitid, P_PIDFD, pidfd.get(), &info, WEXITED | WNOHANG | WNOWAIT, nullptr) != 0) return false;
  return kill_and_reap(pidfd.get());
}

}  // namespace

void SpawnService::reap_orphans() {
  if (ledger_ == nullptr) return;
  const uint64_t begun = __atomic_load_n(&ledger_->begun, __ATOMIC_ACQUIRE);
  if (__atomic_load_n(&ledger_->answering, __ATOMIC_ACQUIRE) == begun) return;
  // The child first: a joining spawn's first child writes the worker's pid, and once it is gone
  // nothing writes any more.
  int reaped = 0;
  const pid_t child = __atomic_load_n(&ledger_->pids.child, __ATOMIC_ACQUIRE);
  if (child > 0 && kill_and_reap_child(child)) ++reaped;
  const pid_t worker = __atomic_load_n(&ledger_->pids.worker, __ATOMIC_ACQUIRE);
  if (worker > 0 && kill_and_reap_child(worker)) ++reaped;
  __atomic_store_n(&ledger_->answering, begun, __ATOMIC_RELAXED);  // settled: never twice
  orphans_reaped_ += reaped;
  if (reaped > 0) log::warn("fwp.spawn_helper.orphans", {{"reaped", reaped}, {"request", begun}});
}

void SpawnService::replace_dead_helper() {
  // The dead helper's requests leave pending_ before a new helper can be asked anything: answers
  // are matched to requests by order.
  for (Pending& p : pending_) dying_.push_back(std::move(p));
  pending_.clear();
  if (!helper_binary_.empty() && quick_deaths_ < kMaxQuickDeaths) {
    // Counted per death, not per restart: a helper that lived long enough clears the count.
    quick_deaths_ = monotonic_ms() - launched_at_ms_ < kQuickDeathMs ? quick_deaths_ + 1 : 1;
    const pid_t dead = helper_pid_;
    if (quick_deaths_ >= kMaxQuickDeaths) {
      log::error("fwp.spawn_helper.restart",
                 {{"dead", dead}, {"error", std::to_string(quick_deaths_) + " helpers in a row died within " +
                                                std::to_string(kQuickDeathMs) + " ms of their start"},
                  {"then", "spawning in this process, which copies its address space per worker"}});
    } else if (auto ok = launch(); !ok) {
      quick_deaths_ = kMaxQuickDeaths;  // a binary that cannot start will not start next time either
      log::error("fwp.spawn_helper.restart",
                 {{"dead", dead}, {"error", ok.error().message()},
                  {"then", "spawning in this process, which copies its address space per worker"}});
    } else {
      ++restarts_;
      log::warn("fwp.spawn_helper.restarted", {{"pid", helper_pid_}, {"dead", dead}, {"restarts", restarts_}});
    }
  }
  // One at a time: a `done` may cancel() a request after it (its owner ended), or ask again (the
  // new helper, or this process, answers).
  while (!dying_.empty()) {
    Pending p = std::move(dying_.front());
    dying_.pop_front();
    if (p.done) p.done(fail(SpawnError{Step::clone, gone_errno_, "the spawn helper died before answering"}));
  }
}

Result<Process, SpawnError> SpawnService::spawn(const SandboxSpec& spec) {
  if (!gone_) {
    auto proc = spawn_in_helper(spec);
    if (!gone_) return proc;
  }
  // The helper is gone: here, as without one. (If it died with this request, whatever it had
  // cloned ends on its own; see serve_one.)
  return fwp::spawn(spec);
}

std::optional<SpawnError> SpawnService::send_request(int sock, const SandboxSpec& spec) {
  std::vector<int> fds;
  const std::vector<char> request = detail::encode_spec(spec, fds);
  if (request.size() > detail::kMaxRecordBytes)
    return SpawnError{Step::clone, E2BIG, "spawn request for " + spec.name};
  if (const int err = detail::send_record(sock, request, fds); err != 0) {
    if (err == EPIPE || err == ECONNRESET || err == ENOTCONN) helper_gone("its socket closed", err);
    return SpawnError{Step::clone, err, "sending the spawn request for " + spec.name};
  }
  return std::nullopt;
}

Result<Process, SpawnError> SpawnService::spawn_in_helper(const SandboxSpec& spec) {
  if (auto e = send_request(sock_.get(), spec)) return fail(std::move(*e));
  detail::Record reply;
  if (const int err = detail::recv_record(sock_.get(), kMaxAnswerBytes, reply, /*nonblocking=*/false); err != 0) {
    helper_gone("it did not answer", err);
    return fail(SpawnError{Step::clone, err, "the spawn helper did not answer for " + spec.name});
  }
  return take_answer(reply);
}

SpawnService::Sent SpawnService::spawn_async(const SandboxSpec& spec, Done done) {
  Sent sent;
  if (!gone_) {
    const std::optional<SpawnError> e = send_request(async_sock_.get(), spec);
    if (!e) {
      sent.ticket = next_ticket_++;
      pending_.push_back(Pending{sent.ticket, std::move(done)});
      return sent;
    }
    if (!gone_) {
      sent.answered.emplace(fail(*e));
      return sent;
    }
  }
  sent.answered.emplace(fwp::spawn(spec));
  return sent;
}

void SpawnService::cancel(Ticket ticket) {
  for (std::deque<Pending>* list : {&pending_, &dying_}) {
    for (Pending& p : *list) {
      if (p.ticket == ticket) p.done = nullptr;
    }
  }
}

void SpawnService::on_answers() {
  for (;;) {
    if (gone_) {
      // Learnt here or elsewhere (a request that could not be sent); either way the old socket,
      // at end of file, is what woke the caller. Once only: a new helper's socket, or a service
      // left without one, has nothing more to say.
      if (!pending_.empty() || !helper_binary_.empty()) replace_dead_helper();
      return;
    }
    detail::Record reply;
    const int err = detail::recv_record(async_sock_.get(), kMaxAnswerBytes, reply, /*nonblocking=*/true);
    if (err == EAGAIN || err == EWOULDBLOCK) return;
    if (err != 0) {
      // Every request still unanswered fails; what the helper had cloned for them ends on its own.
      helper_gone(err == EPIPE || err == ECONNRESET ? "its socket closed" : "it did not answer", err);
      continue;
    }
    if (pending_.empty()) {  // not ours to trust any further: its descriptors close with `reply`
      helper_gone("it answered a request nobody sent", EPROTO);
      continue;
    }
    Pending p = std::move(pending_.front());
    pending_.pop_front();
    if (!p.done) {  // cancelled: not even released
      discard_answer(reply);
      continue;
    }
    p.done(take_answer(reply));  // may call spawn_async again: pending_ is consistent by now
  }
}

void SpawnService::discard_answer(detail::Record& reply) {
  detail::Answer answer;
  const bool ok = !detail::decode_answer(reply.bytes, answer) && answer.ok;
  for (size_t i = 0; i < reply.fds.size(); ++i) {
    // The worker's pidfd first (when it was started), then the children to reap; the two pipes
    // between them just close.
    const bool child = (ok && i == 0) || i >= (ok ? 3u : 0u);
    if (!child) continue;
    if (ok && i == 0) ::syscall(SYS_pidfd_send_signal, reply.fds[i].get(), SIGKILL, nullptr, 0);
    (void)reap(reply.fds[i].get(), /*block=*/true);
  }
}

Result<Process, SpawnError> SpawnService::take_answer(detail::Record& reply) {
  detail::Answer answer;
  std::optional<std::string> bad = detail::decode_answer(reply.bytes, answer);
  const size_t want_fds = (answer.ok ? 3 : 0) + answer.reap;
  if (!bad && reply.fds.size() != want_fds) bad = "a spawn answer with the wrong descriptors";
  if (!bad && !answer.ok && answer.step > static_cast<uint8_t>(Step::join_namespaces)) bad = "an unknown step";
  // Children the helper gave up on, or a joining spawn's first child: ours to reap. They have
  // exited or been killed, so this does not wait long.
  const size_t first_reap = answer.ok ? 3 : 0;
  for (size_t i = first_reap; i < reply.fds.size(); ++i) (void)reap(reply.fds[i].get(), /*block=*/true);
  if (bad) return fail(SpawnError{Step::clone, EPROTO, "spawn helper: " + *bad});
  if (!answer.ok)
    return fail(SpawnError{static_cast<Step>(answer.step), answer.err, std::move(answer.detail)});
  Process proc;
  proc.pid = answer.pid;
  proc.pidfd = std::move(reply.fds[0]);
  proc.status_fd = std::move(reply.fds[1]);
  proc.sync_fd = std::move(reply.fds[2]);
  if (!answer.released) {
    if (auto e = detail::release_child(proc.sync_fd.get())) {
      (void)kill_and_reap(proc.pidfd.get());
      return fail(std::move(*e));
    }
  }
  return proc;
}

Result<Process, SpawnError> spawn_via(SpawnService* service, const SandboxSpec& spec) {
  return service != nullptr ? service->spawn(spec) : spawn(spec);
}

}  // namespace plume::fwp
