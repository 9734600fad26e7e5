// SpawnService: starts workers from a spawn helper, a small process forked from the caller while
// the caller is still small, so that the caller never copies its own address space per worker.
//
// Why: spawn() clones its caller fork-like, and plumed's address space grows with what it runs
// (one channel mapping per instance, its rings, its heap). With 1000 instances parked, plumed's
// own fork took ~0.5 ms, its loop blocked for all of it, and its pages were copy-on-write after.
// The helper's address space is the one plumed had at start-up, whatever plumed holds later.
//
// The worker is still the caller's child: the helper clones it with CLONE_PARENT, so the caller
// pins it with the pidfd it is handed, reaps it, and the worker's parent-death signal follows the
// caller's thread that started the service. The helper holds nothing of the caller's but the
// socket: it exits when the socket closes (or the caller dies).
//
// The helper is either a fork of the caller (start()) or the plume-spawn binary, exec'd from a
// posix_spawn that copies nothing of the caller (start(binary)). Only the second can be replaced
// when it dies: a fork of the caller by then would carry all the caller holds.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "plume/base/result.h"
#include "plume/base/sys_error.h"
#include "plume/base/unique_fd.h"
#include "plume/fwp/sandbox_spec.h"
#include "plume/fwp/spawner.h"

namespace plume::fwp {

namespace detail {
struct Record;
struct SpawnLedger;
}

// Not thread-safe: use it from one thread (plumed's loop).
class SpawnService {
 public:
  // Forks the helper. Call early: the helper keeps the caller's address space as it is now, and
  // every spawn copies that (plumed starts it before its event loop, templates and channels).
  static SysResult<std::unique_ptr<SpawnService>> start();
  // Execs `helper_binary` (fwp/plume-spawn) as the helper, whatever the caller's size. If it dies,
  // on_answers() fails what it had pending and starts a new one, unless kMaxQuickDeaths helpers
  // in a row died within kQuickDeathMs of their start.
  static SysResult<std::unique_ptr<SpawnService>> start(std::string helper_binary);
  static constexpr int kMaxQuickDeaths = 3;
  static constexpr int64_t kQuickDeathMs = 10'000;
  // Closes the socket (the helper exits on its EOF) and reaps the helper.
  ~SpawnService();
  SpawnService(const SpawnService&) = delete;
  SpawnService& operator=(const SpawnService&) = delete;

  // As fwp::spawn(spec), cloned by the helper. Blocks for the helper's parent-side steps (clone,
  // id maps, cgroup attach, release), as spawn() does. If the helper has died, says so once in
  // the log and spawns in this process until on_answers() has replaced it.
  Result<Process, SpawnError> spawn(const SandboxSpec& spec);

  // Without waiting, for a caller with an event loop: the request is sent now (the spec's
  // descriptors travel with it: close them on return), and `done` runs from on_answers() with
  // the outcome, in request order. Watch answer_fd() for POLLIN and call on_answers(). If the
  // helper dies with requests unanswered, on_answers() fails them, after starting the next
  // helper where it can (so a `done` that tries again reaches it).
  // `done` never runs before this returns: an outcome known at once (the helper is gone, so
  // spawn() ran in this process; or the request could not be sent) is returned instead.
  using Done = std::function<void(Result<Process, SpawnError>)>;
  using Ticket = uint64_t;
  struct Sent {
    Ticket ticket = 0;  // pending: for cancel()
    std::optional<Result<Process, SpawnError>> answered;  // known at once; `done` will not run
  };
  [[nodiscard]] Sent spawn_async(const SandboxSpec& spec, Done done);
  // The request's `done` will not run (its owner is gone): what the helper clones for it is
  // killed and reaped when the answer comes.
  void cancel(Ticket ticket);
  // A new descriptor once on_answers() has replaced a dead helper: read it again after each call.
  int answer_fd() const { return async_sock_.get(); }
  void on_answers();
  // No helper: spawns run in this process. Stop watching answer_fd() once this is true and
  // nothing is pending: it stays at end of file. Watched, it is where on_answers() learns of a
  // death and replaces the helper (this turns false again).
  bool gone() const { return gone_; }
  size_t pending() const { return pending_.size() + dying_.size(); }

  pid_t helper_pid() const { return helper_pid_; }
  bool helper_alive() const;
  int restarts() const { return restarts_; }
  // Children of a dead helper's unanswered request that this service reaped (spawn_helper.h).
  int orphans_reaped() const { return orphans_reaped_; }

 private:
  SpawnService() = default;
  // Starts a helper (fork, or exec of helper_binary_) and takes its first record.
  SysResult<void> launch();
  // on_answers() once the helper is gone: a new one where allowed, then the old one's requests
  // fail.
  void replace_dead_helper();
  std::optional<SpawnError> send_request(int sock, const SandboxSpec& spec);
  Result<Process, SpawnError> spawn_in_helper(const SandboxSpec& spec);
  Result<Process, SpawnError> take_answer(detail::Record& reply);
  void discard_answer(detail::Record& reply);  // a cancelled request's: its children ended
  void helper_gone(const char* why, int err);
  // Once the helper is dead: kills and reaps what it had cloned for a request it never answered.
  void reap_orphans();

  UniqueFd sock_;
  UniqueFd async_sock_;  // spawn_async's requests and answers
  struct Pending {
    Ticket ticket;
    Done done;  // empty once cancelled
  };
  std::deque<Pending> pending_;
  std::deque<Pending> dying_;  // a dead helper's, being failed by replace_dead_helper()
  Ticket next_ticket_ = 1;
  pid_t helper_pid_ = -1;
  UniqueFd helper_pidfd_;
  detail::SpawnLedger* ledger_ = nullptr;  // shared with the helper (spawn_helper.h)
  bool gone_ = false;
  int gone_errno_ = 0;
  std::string helper_binary_;  // empty: a forked helper, never replaced
  int64_t launched_at_ms_ = 0;
  int quick_deaths_ = 0;
  int restarts_ = 0;
  int orphans_reaped_ = 0;
};

// Through `service` where there is one, in this process otherwise (tests, tools).
Result<Process, SpawnError> spawn_via(SpawnService* service, const SandboxSpec& spec);

}  // namespace plume::fwp
