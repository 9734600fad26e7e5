// fwp_bench churn: a closed loop of "start an instance, one message round trip, it exits, the
// exit is observed" for --seconds per peer, in 1-second slices taken round-robin so background
// load hits every peer alike. FWP peers start through Template::start_instance (fwp_pool: a pool
// of --pool-size refilled in the background by the controller's loop, which runs while this
// loop waits; fwp_fork: no pool). fork_exec and posix_spawn start first_handler standalone with
// pipes as stdin/stdout: write the message, read the reply, waitpid.
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "fwp_bench.h"
#include "rig.h"

namespace plume::bench {
namespace {

struct Cycle {
  int64_t t0 = 0, t1 = 0, t_reply = 0, t_end = 0;
  bool pooled = false;
};

const char kMsg[] = "ping-0123456789";  // 15 bytes

// One process per cycle: fork+execve or posix_spawn of first_handler (standalone role).
SysResult<Cycle> local_cycle(const std::string& handler, bool use_fork) {
  int in[2], out[2];
  if (::pipe2(in, O_CLOEXEC) != 0) return fail(sys_error("pipe2", "stdin"));
  if (::pipe2(out, O_CLOEXEC) != 0) {
    ::close(in[0]);
    ::close(in[1]);
    return fail(sys_error("pipe2", "stdout"));
  }
  char a0[] = "first_handler";
  char* args[] = {a0, nullptr};
  char env0[] = "PATH=/usr/bin:/bin";
  char* envp[] = {env0, nullptr};
  Cycle c;
  c.t0 = monotonic_ns();
  pid_t pid = -1;
  int err = 0;
  if (use_fork) {
    pid = ::fork();
    if (pid == 0) {
      ::dup2(in[0], 0);
      ::dup2(out[1], 1);
      ::execve(handler.c_str(), args, envp);
      ::_exit(127);
    }
    if (pid < 0) err = errno;
  } else {
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    err = ::posix_spawn(&pid, handler.c_str(), &fa, nullptr, args, envp);
    posix_spawn_file_actions_destroy(&fa);
  }
  ::close(in[0]);
  ::close(out[1]);
  auto done = [&] {
    ::close(in[1]);
    ::close(out[0]);
  };
  if (err != 0) {
    done();
    errno = err;
    return fail(sys_error(use_fork ? "fork" : "posix_spawn", handler));
  }
  const bool wrote = ::write(in[1], kMsg, sizeof kMsg - 1) == static_cast<ssize_t>(sizeof kMsg - 1);
  char buf[64];
  size_t have = 0;
  const size_t want = 8 + sizeof kMsg - 1;
  while (wrote && have < want) {
    const ssize_t n = ::read(out[0], buf + have, sizeof buf - have);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    have += static_cast<size_t>(n);
  }
  c.t_reply = monotonic_ns();
  done();
  int st = 0;
  while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  c.t_end = monotonic_ns();
  if (have != want || std::memcmp(buf + 8, kMsg, sizeof kMsg - 1) != 0 || !WIFEXITED(st) ||
      WEXITSTATUS(st) != 0) {
    return fail(plain_error(handler, "standalone cycle failed (wait status " + std::to_string(st) + ")"));
  }
  uint64_t t1 = 0;
  std::memcpy(&t1, buf, sizeof t1);
  c.t1 = static_cast<int64_t>(t1);
  return c;
}

struct PeerRun {
  std::string name;
  fwp::Template* tmpl = nullptr;  // FWP peers
  std::vector<Cycle> cycles;
  double busy_s = 0;
};

}  // namespace

int run_churn(const FwpOptions& o) {
  std::vector<std::string> names = o.peers;
  if (names.empty()) names = {"fwp_pool", "fwp_fork", "fork_exec", "posix_spawn"};
  auto rig = Rig::create(o.handler, o.ns_holder);
  if (!rig) return fail_with("churn", rig.error());
  std::vector<PeerRun> runs;
  for (const auto& n : names) {
    PeerRun r{n, nullptr, {}, 0};
    if (n == "fwp_pool" || n == "fwp_fork") {
      const bool pool = n == "fwp_pool";
      auto t = (*rig)->start_template(pool ? 0 : 1, pool ? "pool" : "fork",
                                      pool ? std::max<size_t>(1, o.pool_size) : 0, 0, /*huge_text=*/!pool);
      if (!t) return fail_with("churn", t.error());
      r.tmpl = *t;
    } else if (n != "fork_exec" && n != "posix_spawn") {
      return fail_with("churn", plain_error("arguments", "unknown churn peer " + n));
    }
    runs.push_back(std::move(r));
  }
  if (!(*rig)->fill_pools(std::chrono::seconds(30))) {
    return fail_with("churn", plain_error("pool", "not filled within 30 s"));
  }
  const double slice = std::min(1.0, o.seconds);
  const auto msg = std::as_bytes(std::span(kMsg, sizeof kMsg - 1));
  for (bool more = true; more;) {
    more = false;
    for (auto& r : runs) {
      if (r.busy_s >= o.seconds - 1e-9) continue;
      const double len = std::min(slice, o.seconds - r.busy_s);
      const int64_t begin = monotonic_ns();
      const int64_t stop = begin + static_cast<int64_t>(len * 1e9);
      while (monotonic_ns() < stop) {
        if (r.tmpl != nullptr) {
          auto t = (*rig)->start_and_wait(*r.tmpl, msg);
          if (!t) return fail_with("churn", t.error());
          r.cycles.push_back({t->t0, t->t1, t->t_reply, t->t2, t->path == fwp::StartPath::pool});
        } else {
          auto c = local_cycle(o.handler, r.name == "fork_exec");
          if (!c) return fail_with("churn", c.error());
          r.cycles.push_back(*c);
        }
      }
      r.busy_s += static_cast<double>(monotonic_ns() - begin) / 1e9;
      more = more || r.busy_s < o.seconds - 1e-9;
    }
  }
  const size_t lost = (*rig)->lost();
  rig->reset();

  const std::string dir = o.out + "/churn";
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  std::string csv =
      "peer,seconds,cycles,cycles_per_s,pool_hits,p50_start_us,p99_start_us,p50_round_trip_us,"
      "p99_round_trip_us,p50_cycle_us,p99_cycle_us\n";
  std::string md = "Measured " + host_and_load() + " (at the end); " + fixed(o.seconds, 0) +
                   " s per peer in 1 s slices taken round-robin; warm pool of " + std::to_string(o.pool_size) +
                   ".\nCommand: `" + o.command + "`\n\n" +
                   "| peer | cycles/s | cycles | from the pool | start → handler p50 | p99 | start → echo back p50 | p99 | whole cycle (to exit observed) p50 | p99 |\n"
                   "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
  for (const auto& r : runs) {
    std::vector<double> start, rt, cyc;
    size_t hits = 0;
    for (const auto& c : r.cycles) {
      start.push_back(static_cast<double>(c.t1 - c.t0) / 1e3);
      rt.push_back(static_cast<double>(c.t_reply - c.t0) / 1e3);
      cyc.push_back(static_cast<double>(c.t_end - c.t0) / 1e3);
      hits += c.pooled ? 1 : 0;
    }
    const double rate = static_cast<double>(r.cycles.size()) / r.busy_s;
    const std::string hit = r.tmpl != nullptr ? std::to_string(hits) : "";
    csv += r.name + "," + fixed(r.busy_s, 2) + "," + std::to_string(r.cycles.size()) + "," + fixed(rate, 0) +
           "," + hit + "," + fixed(pct(start, 0.5), 1) + "," + fixed(pct(start, 0.99), 1) + "," +
           fixed(pct(rt, 0.5), 1) + "," + fixed(pct(rt, 0.99), 1) + "," + fixed(pct(cyc, 0.5), 1) + "," +
           fixed(pct(cyc, 0.99), 1) + "\n";
    md += "| " + r.name + " | " + fixed(rate, 0) + " | " + std::to_string(r.cycles.size()) + " | " +
          (r.tmpl != nullptr ? hit : "–") + " | " + fixed(pct(start, 0.5), 1) + " µs | " +
          fixed(pct(start, 0.99), 1) + " µs | " + fixed(pct(rt, 0.5), 1) + " µs | " + fixed(pct(rt, 0.99), 1) +
          " µs | " + fixed(pct(cyc, 0.5), 1) + " µs | " + fixed(pct(cyc, 0.99), 1) + " µs |\n";
  }
  md += "\nFWP starts retried (the controller reported the instance `lost`, or it exited without replying; see stderr): " + std::to_string(lost) + ".\n";
  if (!write_file(dir + "/churn.csv", csv).ok() || !write_file(dir + "/churn.md", md).ok()) {
    return fail_with("churn", plain_error("write", dir));
  }
  std::fputs(md.c_str(), stdout);
  return 0;
}

}  // namespace plume::bench
