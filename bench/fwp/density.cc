// fwp_bench density: --tenants templates (distinct tenants: uid ranges and cgroups) with a warm
// pool of --per-tenant each, all parked; then:
//   memory    PSS (/proc/<pid>/smaps_rollup) summed over the parked instances / their count, and
//             the templates', keepers' and namespace holders' PSS (a per-tenant cost)
//   idle CPU  this process's (the supervisor's) user+system time over --idle-seconds of waiting in
//             its poll loop, and the same for every process of the template trees
//             (/proc/<pid>/stat), from when the templates have given back the spare channels
//             made for the fill
//   starts    --resident-starts warm-pool starts, round-robin over the templates, each pool full
//             again (untimed) before the next start, so all instances stay resident
//   fork      fork() of this process (the supervisor), before any template and with everything
//             resident: what a spawn in the supervisor itself pays to copy it
//   spawn     one exec-mode spawn, before any template and with everything resident: in this
//             process, through a spawn helper forked first thing and through plume-spawn, exec'd
//             as plumed does (waiting for each), and only sending the request to plume-spawn
//             (spawn_async): what plumed's loop is blocked for
// With --plume-socket, plumed itself the same way: as many instances parked in a plumed (fresh
// tenants, an fwp image of the same handler), then plumed's CPU time and context switches over
// --idle-seconds in which nobody asks it anything (plumed_idle.cc);
// and compares the memory with --plain processes forked from a process as small as the template
// (first_handler park N: each child blocked in read() on a pipe) and --bwraps sandboxes
// (bwrap --unshare-all --die-with-parent --ro-bind / / --proc /proc --dev /dev sleep), PSS summed
// over each bwrap process tree.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <set>
#include <tuple>

#include "fwp_bench.h"
#include "plume/fwp/spawn_service.h"
#include "plume/fwp/spawner.h"
#include "plume/fwp/tenant_namespaces.h"
#include "rig.h"

namespace plume::bench {
namespace {

using namespace std::chrono_literals;

// PSS in KiB of one process; 0 when it is gone.
uint64_t pss_kib(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/smaps_rollup");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("Pss:", 0) == 0) return std::strtoull(line.c_str() + 4, nullptr, 10);
  }
  return 0;
}

std::vector<pid_t> children(pid_t pid) {
  std::vector<pid_t> out;
  std::ifstream in("/proc/" + std::to_string(pid) + "/task/" + std::to_string(pid) + "/children");
  for (pid_t c; in >> c;) out.push_back(c);
  return out;
}

void tree(pid_t pid, std::vector<pid_t>& out) {
  out.push_back(pid);
  for (pid_t c : children(pid)) tree(c, out);
}

double self_cpu_s() {
  rusage ru{};
  ::getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

std::string kib(double v) { return fixed(v, 1) + " KiB"; }

struct Mem {
  size_t count = 0;
  double pss_kib = 0;   // summed
  double extra_kib = 0; // fixed costs (templates, keepers and holders; the park parent)
  double setup_s = 0;
};

// first_handler park N: N children of a small static process, each blocked in read().
SysResult<Mem> plain_processes(const std::string& handler, int n) {
  Mem m;
  int in[2], out[2];
  if (::pipe2(in, O_CLOEXEC) != 0 || ::pipe2(out, O_CLOEXEC) != 0) return fail(sys_error("pipe2", "park"));
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in[0], 0);
  posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  std::string a0 = handler, a1 = "park", a2 = std::to_string(n);
  char* args[] = {a0.data(), a1.data(), a2.data(), nullptr};
  char env0[] = "PATH=/usr/bin:/bin";
  char* envp[] = {env0, nullptr};
  const int64_t t0 = monotonic_ns();
  pid_t pid = -1;
  const int err = ::posix_spawn(&pid, handler.c_str(), &fa, nullptr, args, envp);
  posix_spawn_file_actions_destroy(&fa);
  ::close(in[0]);
  ::close(out[1]);
  if (err != 0) {
    ::close(in[1]);
    ::close(out[0]);
    errno = err;
    return fail(sys_error("posix_spawn", handler + " park"));
  }
  std::vector<pid_t> kids;
  pid_t k;
  for (;;) {
    const ssize_t r = ::read(out[0], &k, sizeof k);  // pipe writes of 4 bytes are atomic
    if (r < 0 && errno == EINTR) continue;
    if (r != static_cast<ssize_t>(sizeof k)) break;
    kids.push_back(k);
  }
  m.setup_s = static_cast<double>(monotonic_ns() - t0) / 1e9;
  for (pid_t c : kids) m.pss_kib += static_cast<double>(pss_kib(c));
  m.extra_kib = static_cast<double>(pss_kib(pid));
  m.count = kids.size();
  ::close(in[1]);  // EOF: the parent kills and reaps them
  ::close(out[0]);
  ::waitpid(pid, nullptr, 0);
  return m;
}

SysResult<Mem> bwrap_sandboxes(const std::string& bwrap, int n) {
  Mem m;
  if (n <= 0) return m;
  if (bwrap.empty()) return fail(plain_error("bwrap", "not found on PATH"));
  std::vector<pid_t> pids;
  std::vector<std::string> argv = {bwrap, "--unshare-all", "--die-with-parent", "--ro-bind", "/", "/",
                                   "--proc", "/proc", "--dev", "/dev", "--", "sleep", "100000"};
  std::vector<char*> args;
  args.reserve(argv.size() + 1);
  for (auto& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  char env0[] = "PATH=/usr/bin:/bin";
  char* envp[] = {env0, nullptr};
  const int64_t t0 = monotonic_ns();
  auto kill_all = [&] {
    for (pid_t p : pids) ::kill(p, SIGKILL);
    for (pid_t p : pids) ::waitpid(p, nullptr, 0);
  };
  for (int i = 0; i < n; ++i) {
    pid_t pid = -1;
    const int err = ::posix_spawn(&pid, bwrap.c_str(), nullptr, nullptr, args.data(), envp);
    if (err != 0) {
      kill_all();
      errno = err;
      return fail(sys_error("posix_spawn", bwrap));
    }
    pids.push_back(pid);
  }
  // Ready: each tree ends in a `sleep` (bwrap, its pid-1 bwrap, sleep). Poll /proc, bounded.
  auto ready = [](pid_t p) {
    std::vector<pid_t> t;
    tree(p, t);
    for (pid_t q : t) {
      std::ifstream c("/proc/" + std::to_string(q) + "/comm");
      std::string comm;
      if (c >> comm && comm == "sleep") return true;
    }
    return false;
  };
  const int64_t deadline = monotonic_ns() + 300'000'000'000;
  std::set<pid_t> waiting(pids.begin(), pids.end());
  while (!waiting.empty() && monotonic_ns() < deadline) {
    for (auto it = waiting.begin(); it != waiting.end();) it = ready(*it) ? waiting.erase(it) : std::next(it);
    if (!waiting.empty()) ::usleep(20'000);  // polling /proc: no event tells a tree is complete
  }
  m.setup_s = static_cast<double>(monotonic_ns() - t0) / 1e9;
  for (pid_t p : pids) {
    if (waiting.count(p) != 0) continue;
    std::vector<pid_t> t;
    tree(p, t);
    for (pid_t q : t) m.pss_kib += static_cast<double>(pss_kib(q));
    ++m.count;
  }
  kill_all();
  if (!waiting.empty()) std::fprintf(stderr, "fwp_bench density: %zu bwrap trees not ready in 300 s\n", waiting.size());
  return m;
}

// What a spawn in the supervisor itself pays to copy it (what plumed's spawn helper spares it): fork() until it returns here, `rounds` times (each child exits at once and is
// reaped, untimed); and how many mappings the copy had to consider (/proc/self/maps lines).
struct ForkCost {
  double p50_us = 0, p99_us = 0;
  size_t mappings = 0;
};
ForkCost supervisor_fork(int rounds) {
  std::vector<double> us;
  for (int i = 0; i < rounds; ++i) {
    const int64_t t0 = monotonic_ns();
    const pid_t pid = ::fork();
    if (pid == 0) ::_exit(0);
    if (pid < 0) break;
    us.push_back(static_cast<double>(monotonic_ns() - t0) / 1e3);
    while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
    }
  }
  ForkCost c;
  if (!us.empty()) {
    c.p50_us = pct(us, 0.5);
    c.p99_us = pct(us, 0.99);
  }
  std::ifstream maps("/proc/self/maps");
  for (std::string line; std::getline(maps, line);) ++c.mappings;
  return c;
}

// What the supervisor's loop is blocked for per exec-mode worker, template and namespace holder:
// one spawn() (clone, id maps, cgroup attach, release) in this process, which copies this process;
// the same through a spawn helper forked before anything else, and through plume-spawn (exec'd,
// as plumed's is), waiting for the answer (SpawnService::spawn); and only sending the request to
// plume-spawn (SpawnService::spawn_async: plumed's exec-mode workers, keepers and namespace
// holders; the answer is an event of the loop).
// Interleaved, `rounds` each. Each worker's exec and exit are waited for, untimed.
struct SpawnCost {
  std::vector<double> self_us, forked_us, execed_us, async_us;
};
SysResult<SpawnCost> spawn_cost(const fwp::SandboxSpec& spec, fwp::SpawnService& forked, fwp::SpawnService& execed,
                                int rounds) {
  SpawnCost c;
  auto settle = [](Result<fwp::Process, fwp::SpawnError> p, const char* how) -> SysResult<void> {
    auto ran = fwp::wait_for_exec(std::move(p));
    if (!ran) return fail(plain_error(how, ran.error().message()));
    if (auto r = fwp::reap(ran->pidfd.get(), true); !r) return fail(r.error());
    return {};
  };
  for (int i = 0; i < rounds; ++i) {
    int64_t t0 = monotonic_ns();
    auto p = fwp::spawn(spec);
    c.self_us.push_back(static_cast<double>(monotonic_ns() - t0) / 1e3);
    if (auto r = settle(std::move(p), "spawn"); !r) return fail(r.error());

    for (auto [helper, series] : {std::pair{&forked, &c.forked_us}, std::pair{&execed, &c.execed_us}}) {
      t0 = monotonic_ns();
      p = helper->spawn(spec);
      series->push_back(static_cast<double>(monotonic_ns() - t0) / 1e3);
      if (auto r = settle(std::move(p), "spawn helper"); !r) return fail(r.error());
    }

    std::optional<Result<fwp::Process, fwp::SpawnError>> answer;
    t0 = monotonic_ns();
    auto sent = execed.spawn_async(spec, [&](Result<fwp::Process, fwp::SpawnError> a) { answer.emplace(std::move(a)); });
    c.async_us.push_back(static_cast<double>(monotonic_ns() - t0) / 1e3);
    if (sent.answered) return fail(plain_error("spawn helper", "gone: the spawn ran in this process"));
    while (!answer) {
      pollfd pfd{execed.answer_fd(), POLLIN, 0};
      if (::poll(&pfd, 1, 10000) != 1) return fail(plain_error("spawn helper", "no answer within 10 s"));
      execed.on_answers();
    }
    if (auto r = settle(std::move(*answer), "spawn helper (async)"); !r) return fail(r.error());
  }
  return c;
}

// What the supervisor's loop is blocked for by a tenant's namespace holder (once per tenant, on
// its first featherweight start): TenantNamespaces::create through the helper waits for the
// holder's answer and its exec; TenantNamespaces::start (plumed's way) only sends the request,
// and the rest are events of the loop (run here, untimed, until the holder runs). Interleaved,
// `rounds` each; the holder stays in this process's cgroup, as plumed's stay in plumed's.
struct HolderCost {
  std::vector<double> waiting_us, async_us;
};
SysResult<HolderCost> holder_cost(fwp::SandboxSpec sb, const std::string& holder, fwp::SpawnService& helper,
                                  fwp::PollLoop& loop, int rounds) {
  sb.cgroup_procs_files.clear();
  HolderCost c;
  loop.watch(helper.answer_fd(), [&] { helper.on_answers(); });
  for (int i = 0; i < rounds; ++i) {
    int64_t t0 = monotonic_ns();
    auto made = fwp::TenantNamespaces::create(sb, holder, &helper);
    c.waiting_us.push_back(static_cast<double>(monotonic_ns() - t0) / 1e3);
    if (!made) return fail(made.error());
    made->reset();  // ends it; reaped on a thread of its own

    t0 = monotonic_ns();
    auto started = fwp::TenantNamespaces::start(sb, holder, &helper, loop);
    c.async_us.push_back(static_cast<double>(monotonic_ns() - t0) / 1e3);
    if (!started) return fail(started.error());
    fwp::TenantNamespaces& ns = **started;
    if (!loop.run_until([&] { return ns.state() != fwp::TenantNamespaces::State::starting; }, std::chrono::seconds(10)))
      return fail(plain_error("namespace holder", "not running within 10 s"));
    if (ns.state() == fwp::TenantNamespaces::State::failed) return fail(plain_error("namespace holder", ns.error()));
  }
  loop.unwatch(helper.answer_fd());
  return c;
}
}  // namespace

int run_density(const FwpOptions& o) {
  // The forked one first, while this process is small, as plumed did before plume-spawn.
  auto forked_helper = fwp::SpawnService::start();
  if (!forked_helper) return fail_with("density", forked_helper.error());
  auto helper = fwp::SpawnService::start(o.spawn_helper);
  if (!helper) return fail_with("density", helper.error());
  if (o.bwraps > 0 && o.bwrap.empty()) return skip_without("density", "bwrap", "bubblewrap");
  auto rig = Rig::create(o.handler, o.ns_holder);
  if (!rig) return fail_with("density", rig.error());
  Rig& r = **rig;
  const ForkCost fork_empty = supervisor_fork(200);
  auto exec_spec = r.exec_spec();
  if (!exec_spec) return fail_with("density", exec_spec.error());
  auto spawn_empty = spawn_cost(*exec_spec, **forked_helper, **helper, 200);
  if (!spawn_empty) return fail_with("density", spawn_empty.error());
  std::optional<HolderCost> holders;
  if (!r.ns_holder().empty()) {
    auto measured = holder_cost(*exec_spec, r.ns_holder(), **helper, r.loop(), 50);
    if (!measured) return fail_with("density", measured.error());
    holders = std::move(*measured);
  }
  const int64_t t0 = monotonic_ns();
  for (int i = 0; i < o.tenants; ++i) {
    auto t = r.start_template(i, "img", static_cast<size_t>(o.per_tenant));
    if (!t) return fail_with("density", t.error());
  }
  if (!r.fill_pools(std::chrono::seconds(600))) {
    return fail_with("density", plain_error("pools", "not full within 600 s"));
  }
  Mem fwp;
  fwp.setup_s = static_cast<double>(monotonic_ns() - t0) / 1e9;
  std::fprintf(stderr, "fwp_bench density: %d parked instances in %.1f s\n", o.tenants * o.per_tenant, fwp.setup_s);

  // Instances: every process of the template trees but keepers and templates.
  std::vector<pid_t> instances, all;
  std::set<pid_t> fixed_pids;
  for (const auto& t : r.templates()) {
    fixed_pids.insert(t->keeper_pid());
    fixed_pids.insert(t->template_pid());
    tree(t->keeper_pid(), all);
  }
  for (pid_t p : all) {
    if (fixed_pids.count(p) == 0) instances.push_back(p);
  }
  for (pid_t p : r.holder_pids()) fixed_pids.insert(p);  // outside the keepers' trees
  for (pid_t p : instances) fwp.pss_kib += static_cast<double>(pss_kib(p));
  for (pid_t p : fixed_pids) fwp.extra_kib += static_cast<double>(pss_kib(p));
  fwp.count = instances.size();

  // Idle: nothing should run. The supervisor waits in poll(2) on its fds, once the templates
  // have given back the spare channels made for the fill (one refill_delay after it).
  (void)r.loop().run_until(
      [&] {
        for (const auto& t : r.templates()) {
          if (t->spare_channel_target() != fwp::Template::kMinSpareChannels) return false;
        }
        return true;
      },
      std::chrono::seconds(2));
  uint64_t tree_before = 0, tree_after = 0;
  for (pid_t p : all) tree_before += cpu_ns_of(p);
  const double cpu0 = self_cpu_s();
  const int64_t idle0 = monotonic_ns();
  const int64_t idle_end = idle0 + static_cast<int64_t>(o.idle_seconds) * 1'000'000'000;
  size_t rounds = 0;
  while (monotonic_ns() < idle_end) {
    rounds += r.loop().run_once(std::chrono::milliseconds((idle_end - monotonic_ns()) / 1'000'000 + 1)) ? 1 : 0;
  }
  const double idle_wall = static_cast<double>(monotonic_ns() - idle0) / 1e9;
  const double idle_cpu = self_cpu_s() - cpu0;
  for (pid_t p : all) tree_after += cpu_ns_of(p);
  const double tree_cpu = static_cast<double>(tree_after - tree_before) / 1e9;

  // Starts with everything resident.
  std::vector<double> starts, exits;
  size_t pooled = 0;
  static const char msg[] = "x";
  for (int i = 0; i < o.resident_starts; ++i) {
    if (!r.fill_pools(30s)) return fail_with("density", plain_error("pools", "not refilled within 30 s"));
    fwp::Template& t = *r.templates()[static_cast<size_t>(i) % r.templates().size()];
    auto s = r.start_and_wait(t, std::as_bytes(std::span(msg, 1)));
    if (!s) return fail_with("density", s.error());
    starts.push_back(static_cast<double>(s->t1 - s->t0) / 1e3);
    exits.push_back(static_cast<double>(s->t2 - s->t0) / 1e3);
    pooled += s->path == fwp::StartPath::pool ? 1 : 0;
  }
  if (!r.fill_pools(30s)) return fail_with("density", plain_error("pools", "not refilled within 30 s"));
  const ForkCost fork_full = supervisor_fork(200);
  auto spawn_full = spawn_cost(*exec_spec, **forked_helper, **helper, 200);
  if (!spawn_full) return fail_with("density", spawn_full.error());
  const size_t lost = r.lost();
  rig->reset();

  // plumed itself, with as many instances parked (--plume-socket): a fresh set of tenants.
  std::optional<PlumedIdle> plumed;
  if (!o.plume.socket.empty()) {
    auto measured = measure_plumed_idle(o.plume, o.handler, o.tenants, o.per_tenant, o.idle_seconds);
    if (!measured) return fail_with("density (plumed)", measured.error());
    plumed = *measured;
  }

  auto plain = plain_processes(o.handler, o.plain);
  if (!plain) return fail_with("density", plain.error());
  auto bw = bwrap_sandboxes(o.bwrap, o.bwraps);
  if (!bw) return fail_with("density", bw.error());

  const std::string dir = o.out + "/density";
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  auto per = [](const Mem& m) { return m.count ? m.pss_kib / static_cast<double>(m.count) : 0.0; };
  std::string csv = "what,count,setup_s,pss_per_process_kib,pss_total_kib,fixed_pss_kib\n";
  csv += "fwp_parked_instance," + std::to_string(fwp.count) + "," + fixed(fwp.setup_s, 2) + "," + fixed(per(fwp), 1) +
         "," + fixed(fwp.pss_kib, 0) + "," + fixed(fwp.extra_kib, 0) + "\n";
  csv += "plain_process_in_read," + std::to_string(plain->count) + "," + fixed(plain->setup_s, 2) + "," +
         fixed(per(*plain), 1) + "," + fixed(plain->pss_kib, 0) + "," + fixed(plain->extra_kib, 0) + "\n";
  csv += "bwrap_sandbox," + std::to_string(bw->count) + "," + fixed(bw->setup_s, 2) + "," + fixed(per(*bw), 1) + "," +
         fixed(bw->pss_kib, 0) + ",0\n";
  std::string md = "Measured " + host_and_load() + " (at the end); " + std::to_string(o.tenants) +
                   " tenants × " + std::to_string(o.per_tenant) + " parked instances.\nCommand: `" + o.command +
                   "`\n\n| resident | count | set up in | PSS per process | PSS total | fixed cost |\n"
                   "|---|---:|---:|---:|---:|---:|\n";
  md += "| Plume FWP instances, parked in warm pools | " + std::to_string(fwp.count) + " | " + fixed(fwp.setup_s, 1) +
        " s | " + kib(per(fwp)) + " | " + fixed(fwp.pss_kib / 1024, 1) + " MiB | " + fixed(fwp.extra_kib / 1024, 1) +
        " MiB (" + std::to_string(o.tenants) + " templates + keepers + namespace holders) |\n";
  md += "| plain processes forked from a small static process, blocked in read() | " +
        std::to_string(plain->count) + " | " + fixed(plain->setup_s, 1) + " s | " + kib(per(*plain)) + " | " +
        fixed(plain->pss_kib / 1024, 1) + " MiB | " + kib(plain->extra_kib) + " (the parent) |\n";
  md += "| `bwrap --unshare-all … sleep` sandboxes (whole trees) | " + std::to_string(bw->count) + " | " +
        fixed(bw->setup_s, 1) + " s | " + kib(per(*bw)) + " | " + fixed(bw->pss_kib / 1024, 1) + " MiB | – |\n";
  md += "\n| idle, " + fixed(idle_wall, 1) + " s with all instances parked | CPU time |\n|---|---:|\n";
  md += "| supervisor (this process: Template controllers + poll loop; " + std::to_string(rounds) +
        " wake-ups) | " + fixed(idle_cpu * 1e3, 2) + " ms |\n";
  const std::string tick = fixed(1e3 / static_cast<double>(::sysconf(_SC_CLK_TCK)), 0);
  md += "| all " + std::to_string(all.size()) + " processes of the template trees | " + fixed(tree_cpu * 1e3, 0) +
        " ms (clock-tick resolution: " + tick + " ms) |\n";
  if (plumed) {
    md += "\n| plumed at rest, " + fixed(plumed->seconds, 1) + " s with " + std::to_string(plumed->parked) +
          " instances parked (" + std::to_string(o.tenants) + " tenants × " + std::to_string(o.per_tenant) +
          ", filled in " + fixed(plumed->setup_s, 1) + " s) | CPU time | context switches |\n|---|---:|---:|\n";
    md += "| plumed (every thread) | " + fixed(plumed->cpu_ms, 0) + " ms (clock-tick resolution: " + tick + " ms) | " +
          std::to_string(plumed->switches) + " |\n";
  }
  md += "\n| warm-pool starts with all instances resident | starts | from the pool | start → handler p50 | p99 | start → exit observed p50 | p99 |\n"
        "|---|---:|---:|---:|---:|---:|---:|\n";
  md += "| round-robin over " + std::to_string(o.tenants) + " templates | " + std::to_string(starts.size()) + " | " +
        std::to_string(pooled) + " | " + fixed(pct(starts, 0.5), 1) + " µs | " + fixed(pct(starts, 0.99), 1) +
        " µs | " + fixed(pct(exits, 0.5), 1) + " µs | " + fixed(pct(exits, 0.99), 1) + " µs |\n";
  csv += "\nidle_seconds,supervisor_cpu_ms,tree_cpu_ms,resident_starts,p50_start_us,p99_start_us\n" +
         fixed(idle_wall, 2) + "," + fixed(idle_cpu * 1e3, 2) + "," + fixed(tree_cpu * 1e3, 0) + "," +
         std::to_string(starts.size()) + "," + fixed(pct(starts, 0.5), 1) + "," + fixed(pct(starts, 0.99), 1) + "\n";
  md += "\n| fork() of the supervisor, as a spawn in it copies it (plumed's spawn helper spares it that) | its mappings | p50 | p99 |\n"
        "|---|---:|---:|---:|\n";
  md += "| before any template | " + std::to_string(fork_empty.mappings) + " | " + fixed(fork_empty.p50_us, 1) + " µs | " +
        fixed(fork_empty.p99_us, 1) + " µs |\n";
  md += "| with all " + std::to_string(fwp.count) + " instances parked | " + std::to_string(fork_full.mappings) + " | " +
        fixed(fork_full.p50_us, 1) + " µs | " + fixed(fork_full.p99_us, 1) + " µs |\n";
  csv += "\nsupervisor_fork,mappings,p50_us,p99_us\nbefore_templates," + std::to_string(fork_empty.mappings) + "," +
         fixed(fork_empty.p50_us, 1) + "," + fixed(fork_empty.p99_us, 1) + "\nall_parked," +
         std::to_string(fork_full.mappings) + "," + fixed(fork_full.p50_us, 1) + "," + fixed(fork_full.p99_us, 1) + "\n";
  md += "\n| spawning an exec-mode worker (`/bin/true`): what blocks the supervisor's loop, p50 / p99 | spawn() in this "
        "process | through a spawn helper forked first, waiting for it | through plume-spawn (exec'd, plumed's), waiting "
        "for it | through plume-spawn, request only (spawn_async, plumed's way) |\n"
        "|---|---:|---:|---:|---:|\n";
  csv += "\nspawn_call,self_p50_us,self_p99_us,forked_helper_p50_us,forked_helper_p99_us,execed_helper_p50_us,"
         "execed_helper_p99_us,async_p50_us,async_p99_us\n";
  for (const auto& [label, key, c] : {std::tuple{std::string("before any template"), "before_templates", &*spawn_empty},
                                      std::tuple{"with all " + std::to_string(fwp.count) + " instances parked",
                                                 "all_parked", &*spawn_full}}) {
    auto cell = [](const std::vector<double>& v) { return fixed(pct(v, 0.5), 1) + " / " + fixed(pct(v, 0.99), 1) + " µs"; };
    md += "| " + label + " | " + cell(c->self_us) + " | " + cell(c->forked_us) + " | " + cell(c->execed_us) + " | " +
          cell(c->async_us) + " |\n";
    csv += std::string(key);
    for (const std::vector<double>* v : {&c->self_us, &c->forked_us, &c->execed_us, &c->async_us})
      csv += "," + fixed(pct(*v, 0.5), 1) + "," + fixed(pct(*v, 0.99), 1);
    csv += "\n";
  }
  if (holders) {
    auto cell = [](const std::vector<double>& v) { return fixed(pct(v, 0.5), 1) + " / " + fixed(pct(v, 0.99), 1) + " µs"; };
    md += "\n| a tenant's namespace holder (once per tenant): what blocks the supervisor's loop, p50 / p99 | "
          "through the helper, waiting for its exec (TenantNamespaces::create) | request only (TenantNamespaces::start) |\n"
          "|---|---:|---:|\n";
    md += "| before any template, " + std::to_string(holders->async_us.size()) + " each | " + cell(holders->waiting_us) +
          " | " + cell(holders->async_us) + " |\n";
    csv += "\nholder_call,waiting_p50_us,waiting_p99_us,async_p50_us,async_p99_us\nbefore_templates," +
           fixed(pct(holders->waiting_us, 0.5), 1) + "," + fixed(pct(holders->waiting_us, 0.99), 1) + "," +
           fixed(pct(holders->async_us, 0.5), 1) + "," + fixed(pct(holders->async_us, 0.99), 1) + "\n";
  }
  if (plumed) {
    csv += "\nplumed_parked,plumed_fill_s,plumed_idle_seconds,plumed_cpu_ms,plumed_context_switches\n" +
           std::to_string(plumed->parked) + "," + fixed(plumed->setup_s, 2) + "," + fixed(plumed->seconds, 2) + "," +
           fixed(plumed->cpu_ms, 0) + "," + std::to_string(plumed->switches) + "\n";
  }
  md += "\nFWP starts retried (the controller reported the instance `lost`, or it exited without replying; see stderr): " + std::to_string(lost) + ".\n";
  if (!write_file(dir + "/density.csv", csv).ok() || !write_file(dir + "/density.md", md).ok()) {
    return fail_with("density", plain_error("write", dir));
  }
  std::fputs(md.c_str(), stdout);
  return 0;
}

}  // namespace plume::bench
