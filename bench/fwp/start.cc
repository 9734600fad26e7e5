// fwp_bench start: from the start call to the first instruction and to the exit being observed,
// for Plume's two FWP start paths and their peers, interleaved round-robin in one process.
//   fwp_pool      Template::start_instance() with a parked instance ready: the doorbell
//   fwp_spin      the same with the pool's newest instance a spinning standby (polls its channel
//                 at SCHED_IDLE): no wake-up. Where the other peers' work sent it to sleep, the
//                 bench waits, untimed, until it polls again (counted in the report). Parked for
//                 the whole run, it delays the other peers' wake-ups on its CPU (up to a
//                 scheduler tick: docs/fwp.md), so run.sh measures it in a run of its own
//   fwp_fork      the same on a template without a pool: the template forks the instance
//   bare_fork     fork() in a process exactly as small as the template (first_handler
//                 fork-server), the child reads the clock and exits; t0 before the request byte
//   bare_wake     a plain process (first_handler wait-doorbell, no sandbox, no Plume) parked in
//                 read() on a pipe, woken by one byte: the floor of any doorbell start here;
//                 t0 before the byte. Each start spawns the next one, untimed.
//   plume_exec    an exec-mode worker through plumed's HTTP API (bench/spawn's peer)
//   plume_fwp     a warm-pool instance of the same first_handler through plumed's HTTP API
//   plume_fwp_spin  the same on an image with one spinning standby (fwp.spinning_standbys = 1),
//                 taken as a tenant would: no waiting for the standby to poll again. Only when
//                 named in --peers (plumed must grant it: daemon.spinning_standby_budget): next
//                 to fwp_spin's standby it would make two pollers on a 2-CPU host
//   fork_exec, vfork_exec, posix_spawn, bwrap, crun: bench/spawn's local peers, started from a
//                 process of their own (peer_host.h): fork_exec forks its caller, and this
//                 process is the supervisor under test
// FWP and bare_fork children read the clock as their first instruction too: first_handler's
// handler (after libplume's dispatch), the fork-server's child right after fork() returns.
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>

#include "fwp_bench.h"
#include "peer_host.h"
#include "plume/fwp/process_usage.h"
#include "report.h"
#include "rig.h"

extern char** environ;

namespace plume::bench {
namespace {

using namespace std::chrono_literals;

// The state letter of /proc/PID/stat ('R', 'S', ...), '?' if unreadable.
char process_state(pid_t pid) {
  const auto stat = fwp::process_stat(pid);
  return stat ? stat->state : '?';
}

class FwpPeer final : public Peer {
 public:
  // fwp_spin measures a start served by a polling standby: untimed, it waits (up to 2 s) for the
  // standby to poll again where the other peers' work sent it to sleep ('S' rather than 'R'),
  // and counts how often it had to.
  struct SpinCount {
    size_t polling = 0, starts = 0, never_polled = 0;
  };
  FwpPeer(std::string name, Rig& rig, fwp::Template& t, SpinCount* spin = nullptr)
      : name_(std::move(name)), rig_(rig), t_(t), spin_(spin) {}
  const std::string& name() const override { return name_; }
  SysResult<Sample> start_once() override {
    // Its pool is full: run_start refills every pool (untimed) before each peer's start, so a
    // warm-pool start is only measured warm.
    const size_t pool = t_.spec().pool_size;
    if (spin_ != nullptr) {
      for (const fwp::Instance* inst : t_.parked()) {
        if (!inst->spins()) continue;
        ++spin_->starts;
        const bool polling = process_state(inst->pid()) == 'R';
        spin_->polling += polling;
        const auto give_up = std::chrono::steady_clock::now() + 2s;
        while (!polling && process_state(inst->pid()) != 'R') {
          if (std::chrono::steady_clock::now() > give_up) {
            ++spin_->never_polled;
            break;
          }
          (void)rig_.loop().run_once(1ms);  // pumps the loop, or waits 1 ms
        }
      }
    }
    static const char msg[] = "x";
    auto r = rig_.start_and_wait(t_, std::as_bytes(std::span(msg, 1)));
    if (!r) return fail(r.error());
    if ((r->path == fwp::StartPath::pool) != (pool > 0)) {
      return fail(plain_error(name_, "start took the wrong path"));
    }
    return Sample{r->t0, r->t1, r->t2};
  }

 private:
  std::string name_;
  Rig& rig_;
  fwp::Template& t_;
  SpinCount* spin_;
};

// fork() from a process as small as the template: first_handler's fork-server.
class BareForkPeer final : public Peer {
 public:
  static SysResult<std::unique_ptr<Peer>> make(const std::string& handler) {
    int req[2], resp[2];
    if (::pipe2(req, O_CLOEXEC) != 0 || ::pipe2(resp, O_CLOEXEC) != 0) {
      return fail(sys_error("pipe2", "fork-server pipes"));
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, req[0], 0);
    posix_spawn_file_actions_adddup2(&fa, resp[1], 1);
    std::string a0 = handler, a1 = "fork-server";
    char* args[] = {a0.data(), a1.data(), nullptr};
    char env0[] = "PATH=/usr/bin:/bin";
    char* envp[] = {env0, nullptr};
    pid_t pid = -1;
    const int err = ::posix_spawn(&pid, handler.c_str(), &fa, nullptr, args, envp);
    posix_spawn_file_actions_destroy(&fa);
    ::close(req[0]);
    ::close(resp[1]);
    if (err != 0) {
      errno = err;
      return fail(sys_error("posix_spawn", handler + " fork-server"));
    }
    return std::unique_ptr<Peer>(new BareForkPeer(pid, req[1], resp[0]));
  }
  ~BareForkPeer() override {
    ::close(req_);  // EOF: the server ends
    ::close(resp_);
    ::waitpid(pid_, nullptr, 0);
  }
  const std::string& name() const override { return name_; }
  SysResult<Sample> start_once() override {
    Sample s;
    s.t0_ns = monotonic_ns();
    if (::write(req_, "f", 1) != 1) return fail(sys_error("write", "fork-server request"));
    uint64_t t[2] = {0, 0};
    size_t have = 0;
    while (have < sizeof t) {
      const ssize_t n = ::read(resp_, reinterpret_cast<char*>(t) + have, sizeof t - have);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return fail(sys_error("read", "fork-server reply"));
      have += static_cast<size_t>(n);
    }
    s.t2_ns = monotonic_ns();
    s.t1_ns = static_cast<int64_t>(t[0]);
    return s;
  }

 private:
  BareForkPeer(pid_t pid, int req, int resp) : pid_(pid), req_(req), resp_(resp) {}
  std::string name_ = "bare_fork";
  pid_t pid_;
  int req_;
  int resp_;
};

// A plain process parked in read() on a pipe; the start is one byte written to it.
class BareWakePeer final : public Peer {
 public:
  explicit BareWakePeer(std::string handler) : handler_(std::move(handler)) {}
  ~BareWakePeer() override { reap_parked(); }
  const std::string& name() const override { return name_; }
  SysResult<Sample> start_once() override {
    if (pid_ < 0) {
      if (auto ok = spawn_parked(); !ok) return fail(ok.error());
    }
    Sample s;
    s.t0_ns = monotonic_ns();
    if (::write(doorbell_, "w", 1) != 1) return fail(sys_error("write", "bare_wake doorbell"));
    uint64_t t = 0;
    if (!read_exact(reply_, &t, sizeof t)) return fail(sys_error("read", "bare_wake reply"));
    int st = 0;
    while (::waitpid(pid_, &st, 0) < 0 && errno == EINTR) {
    }
    s.t2_ns = monotonic_ns();
    s.t1_ns = static_cast<int64_t>(t);
    pid_ = -1;
    close_pipes();
    if (auto ok = spawn_parked(); !ok) return fail(ok.error());  // the next one, untimed
    return s;
  }

 private:
  static bool read_exact(int fd, void* p, size_t n) {
    size_t have = 0;
    while (have < n) {
      const ssize_t r = ::read(fd, static_cast<char*>(p) + have, n - have);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) return false;
      have += static_cast<size_t>(r);
    }
    return true;
  }
  // 'S' in /proc/PID/stat once it sleeps in read(): the start must find it asleep.
  static bool sleeping(pid_t pid) { return process_state(pid) == 'S'; }
  SysResult<void> spawn_parked() {
    int bell[2], reply[2];
    if (::pipe2(bell, O_CLOEXEC) != 0) return fail(sys_error("pipe2", "bare_wake doorbell"));
    if (::pipe2(reply, O_CLOEXEC) != 0) {
      ::close(bell[0]);
      ::close(bell[1]);
      return fail(sys_error("pipe2", "bare_wake reply"));
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, bell[0], 0);
    posix_spawn_file_actions_adddup2(&fa, reply[1], 1);
    std::string a0 = handler_, a1 = "wait-doorbell";
    char* args[] = {a0.data(), a1.data(), nullptr};
    char env0[] = "PATH=/usr/bin:/bin";
    char* envp[] = {env0, nullptr};
    pid_t pid = -1;
    const int err = ::posix_spawn(&pid, handler_.c_str(), &fa, nullptr, args, envp);
    posix_spawn_file_actions_destroy(&fa);
    ::close(bell[0]);
    ::close(reply[1]);
    doorbell_ = bell[1];
    reply_ = reply[0];
    if (err != 0) {
      close_pipes();
      errno = err;
      return fail(sys_error("posix_spawn", handler_ + " wait-doorbell"));
    }
    pid_ = pid;
    char parked = 0;
    if (!read_exact(reply_, &parked, 1)) return fail(plain_error(name_, "wait-doorbell did not start"));
    for (int i = 0; !sleeping(pid_); ++i) {
      if (i > 100000) return fail(plain_error(name_, "wait-doorbell never went to sleep"));
      ::sched_yield();
    }
    return {};
  }
  void close_pipes() {
    if (doorbell_ >= 0) ::close(doorbell_);
    if (reply_ >= 0) ::close(reply_);
    doorbell_ = reply_ = -1;
  }
  void reap_parked() {
    close_pipes();  // EOF on its stdin: it ends
    if (pid_ > 0) ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  std::string name_ = "bare_wake";
  std::string handler_;
  pid_t pid_ = -1;
  int doorbell_ = -1;
  int reply_ = -1;
};

class Renamed final : public Peer {
 public:
  Renamed(std::string name, std::unique_ptr<Peer> p) : name_(std::move(name)), p_(std::move(p)) {}
  const std::string& name() const override { return name_; }
  SysResult<Sample> start_once() override { return p_->start_once(); }

 private:
  std::string name_;
  std::unique_ptr<Peer> p_;
};

}  // namespace

int run_start(const FwpOptions& o) {
  std::vector<std::string> names = o.peers;
  if (names.empty()) {
    names = {"fwp_pool", "fwp_spin", "bare_wake", "fwp_fork", "bare_fork", "fork_exec", "vfork_exec", "posix_spawn", "bwrap", "crun"};
    if (!o.plume.socket.empty()) {
      names.push_back("plume_fwp");
      names.push_back("plume_exec");
    }
  }
  auto want = [&](const char* n) { return std::find(names.begin(), names.end(), n) != names.end(); };
  if (o.binary.empty() && (want("fork_exec") || want("vfork_exec") || want("posix_spawn") ||
                           want("bwrap") || want("crun") || want("plume_exec"))) {
    return fail_with("start", plain_error("arguments", "--binary (first_instruction) is required"));
  }
  // fd 3 first: dup2 onto it must not clobber an fd something else opened.
  auto ts = make_timestamp_pipe();
  if (!ts) return fail_with("start", ts.error());
  PeerEnv env;
  env.timestamp_fd = *ts;
  env.bwrap_path = o.bwrap;
  env.crun_path = o.crun;
  std::string scratch;
  if (!o.binary.empty()) {
    auto dir = make_scratch(o.binary, env);
    if (!dir) return fail_with("start", dir.error());
    scratch = *dir;
  }
  struct Cleanup {
    std::string dir;
    ~Cleanup() {
      std::error_code ec;
      if (!dir.empty()) std::filesystem::remove_all(dir, ec);
    }
  } cleanup{scratch};
  if (want("crun")) {
    if (o.crun.empty()) return skip_without("start", "crun", "crun");
    if (auto ok = hide_unified_cgroup(); !ok) return fail_with("start", ok.error());
  }
  if (want("bwrap") && o.bwrap.empty()) return skip_without("start", "bwrap", "bubblewrap");

  // bench/spawn's local peers start from a process of their own, forked now, before any
  // template: fork_exec forks its caller, and this process is the supervisor under test.
  std::vector<std::string> local;
  for (const auto& n : names) {
    if (is_local_peer(n)) local.push_back(n);
  }
  std::unique_ptr<LocalPeerHost> local_host;  // outlives `peers`, which call into it
  if (!local.empty()) {
    auto host = LocalPeerHost::start(local, env);
    if (!host) return fail_with("start", host.error());
    local_host = std::move(*host);
  }

  std::map<std::string, size_t> plume_fwp_pool_hits;  // by peer name
  FwpPeer::SpinCount spin_found_polling;
  auto rig = Rig::create(o.handler, o.ns_holder);
  if (!rig) return fail_with("start", rig.error());
  std::vector<std::unique_ptr<Peer>> peers;
  for (const auto& n : names) {
    if (n == "fwp_pool" || n == "fwp_fork") {
      const bool pool = n == "fwp_pool";
      auto t = (*rig)->start_template(pool ? 0 : 1, pool ? "pool" : "fork",
                                      pool ? std::max<size_t>(1, o.pool_size) : 0, 0, /*huge_text=*/!pool);
      if (!t) return fail_with("start", t.error());
      peers.push_back(std::make_unique<FwpPeer>(n, **rig, **t));
    } else if (n == "fwp_spin") {
      auto t = (*rig)->start_template(2, "spin", std::max<size_t>(1, o.pool_size), 1);
      if (!t) return fail_with("start", t.error());
      if (!(*t)->spinning_allowed()) {
        return fail_with("start", plain_error(n, "spinning standbys need CAP_SYS_NICE or RLIMIT_NICE 20 to lend"));
      }
      peers.push_back(std::make_unique<FwpPeer>(n, **rig, **t, &spin_found_polling));
    } else if (n == "bare_fork") {
      auto p = BareForkPeer::make(o.handler);
      if (!p) return fail_with("start", p.error());
      peers.push_back(std::move(*p));
    } else if (n == "bare_wake") {
      peers.push_back(std::make_unique<BareWakePeer>(o.handler));
    } else if (n == "plume_exec") {
      PlumeOptions po = o.plume;
      po.rootfs = env.rootfs;
      auto p = make_plume_peer(po);
      if (!p) return fail_with("start", p.error());
      peers.push_back(std::make_unique<Renamed>(n, std::move(*p)));
    } else if (n == "plume_fwp" || n == "plume_fwp_spin") {
      auto p = make_plume_fwp_peer(o.plume, o.handler, std::max<size_t>(1, o.pool_size), &plume_fwp_pool_hits[n],
                                   n == "plume_fwp_spin" ? 1 : 0);
      if (!p) return fail_with("start", p.error());
      peers.push_back(std::move(*p));
    } else if (auto p = local_host ? local_host->peer(n) : nullptr) {
      peers.push_back(std::move(p));
    } else {
      return fail_with("start", plain_error("arguments", "unknown peer " + n));
    }
  }

  // The round-robin of bench/spawn: every peer once per round, rotating who goes first; crun,
  // an order of magnitude slower, in every stride-th round only.
  const int stride = o.crun_iterations > 0 ? std::max(1, o.iterations / o.crun_iterations) : 0;
  std::vector<PeerSamples> results;
  results.reserve(peers.size());
  for (const auto& p : peers) results.push_back({p->name(), {}});
  for (int round = 0; round < o.warmup + o.iterations; ++round) {
    const bool measured = round >= o.warmup;
    const int m = round - o.warmup;
    for (size_t k = 0; k < peers.size(); ++k) {
      const size_t i = (k + static_cast<size_t>(round)) % peers.size();
      if (peers[i]->name() == "crun" && measured &&
          (stride == 0 || m % stride != 0 || static_cast<int>(results[i].samples.size()) >= o.crun_iterations)) {
        continue;
      }
      // Untimed: every warm pool is full again, so that no peer's start shares the CPUs with a
      // refill the previous start left behind (the pool that served it refills on its exit).
      if (!(*rig)->fill_pools(10s)) return fail_with("start", plain_error("start", "pools not refilled within 10 s"));
      auto s = peers[i]->start_once();
      if (!s) return fail_with("start", s.error());
      if (s->t1_ns < s->t0_ns || s->t1_ns > s->t2_ns) {
        return fail_with("start", plain_error(peers[i]->name(), "first-instruction time outside [start, exit]"));
      }
      if (measured) results[i].samples.push_back(*s);
    }
    if (measured && (m + 1) % 200 == 0) std::fprintf(stderr, "fwp_bench start: %d/%d rounds\n", m + 1, o.iterations);
  }
  peers.clear();
  const size_t lost = (*rig)->lost();
  rig->reset();

  const std::string dir = o.out + "/start";
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  const int crun_iterations = want("crun") ? o.crun_iterations : 0;
  RunInfo info{o.command, o.iterations, crun_iterations, o.warmup};
  if (auto ok = write_report(dir, info, results); !ok) return fail_with("start", ok.error());

  // The microsecond table and the targets.
  std::map<std::string, double> p50;
  std::string md = "Measured " + host_and_load() + " (at the end); " + std::to_string(o.warmup) +
                   " warm-up rounds, then " + std::to_string(o.iterations) + " interleaved rounds" +
                   (crun_iterations > 0 ? " (crun: " + std::to_string(crun_iterations) + ")" : "") +
                   "; warm pool of " + std::to_string(o.pool_size) +
                   ".\nCommand: `" + o.command + "`\n\n" +
                   "| peer | starts | start → first instruction p50 | p99 | start → exit observed p50 | p99 |\n"
                   "|---|---:|---:|---:|---:|---:|\n";
  for (const auto& r : results) {
    std::vector<double> first, exit;
    for (const auto& s : r.samples) {
      first.push_back(static_cast<double>(s.t1_ns - s.t0_ns) / 1e3);
      exit.push_back(static_cast<double>(s.t2_ns - s.t0_ns) / 1e3);
    }
    p50[r.peer] = pct(first, 0.5);
    md += "| " + r.peer + " | " + std::to_string(r.samples.size()) + " | " + fixed(pct(first, 0.5), 1) +
          " µs | " + fixed(pct(first, 0.99), 1) + " µs | " + fixed(pct(exit, 0.5), 1) + " µs | " +
          fixed(pct(exit, 0.99), 1) + " µs |\n";
  }
  std::string targets;  // rows for the targets the peers in this run can speak to
  if (p50.count("fwp_pool")) {
    targets += "| warm-pool start p50 ≤ 10 µs | " + fixed(p50["fwp_pool"], 1) + " µs | " +
               (p50["fwp_pool"] <= 10 ? "yes" : "no") + " |\n";
    if (p50.count("fork_exec")) {
      const double x = p50["fork_exec"] / p50["fwp_pool"];
      targets += "| fork+exec / warm pool ≥ 100× | " + fixed(x, 0) + "× | " + (x >= 100 ? "yes" : "no") + " |\n";
    }
    if (p50.count("bare_wake")) {
      targets += "| (context) warm pool / bare wake-up of a parked plain process | " +
                 fixed(p50["fwp_pool"] / p50["bare_wake"], 2) + "× | – |\n";
    }
  }
  if (p50.count("fwp_spin")) {
    targets += "| warm-pool start p50 ≤ 10 µs, spinning standby | " + fixed(p50["fwp_spin"], 1) + " µs | " +
               (p50["fwp_spin"] <= 10 ? "yes" : "no") + " |\n";
    if (p50.count("fork_exec")) {
      const double x = p50["fork_exec"] / p50["fwp_spin"];
      targets += "| fork+exec / warm pool ≥ 100×, spinning standby | " + fixed(x, 0) + "× | " +
                 (x >= 100 ? "yes" : "no") + " |\n";
    }
  }
  if (p50.count("fwp_fork") && p50.count("bare_fork")) {
    const double x = p50["fwp_fork"] / p50["bare_fork"];
    targets += "| template fork / bare fork ≤ 1.2× | " + fixed(x, 2) + "× | " + (x <= 1.2 ? "yes" : "no") + " |\n";
  }
  if (!targets.empty()) md += "\n| target (start → first instruction, medians) | measured | met |\n|---|---:|---|\n" + targets;
  for (const auto& r : results) {
    if (r.peer != "plume_fwp" && r.peer != "plume_fwp_spin") continue;
    md += "\n" + r.peer + " (the warm pool" + (r.peer == "plume_fwp_spin" ? ", one spinning standby," : "") +
          " through plumed's HTTP API): " + std::to_string(plume_fwp_pool_hits[r.peer]) + " of its " +
          std::to_string(r.samples.size() + static_cast<size_t>(o.warmup)) +
          " starts (warm-up included) came from the pool, the rest forked (the pool had not refilled).\n";
  }
  if (spin_found_polling.starts > 0) {
    md += "\nfwp_spin: " + std::to_string(spin_found_polling.polling) + " of its " +
          std::to_string(spin_found_polling.starts) +
          " starts (warm-up included) found the standby polling at once; for the others the other "
          "peers' work had sent it to sleep (backed off), and the bench waited, untimed, until it "
          "polled again (" + std::to_string(spin_found_polling.never_polled) +
          " waits gave up after 2 s and woke it).\n";
  }
  md += "\nFWP starts retried (the controller reported the instance `lost`, or it exited without replying; see stderr): " + std::to_string(lost) + ".\n";
  if (!write_file(dir + "/start.md", md).ok()) return fail_with("start", plain_error("write", dir + "/start.md"));
  std::fputs(md.c_str(), stdout);
  return 0;
}

}  // namespace plume::bench
