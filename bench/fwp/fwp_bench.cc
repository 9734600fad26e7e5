// fwp_bench start|churn|density [options]: see kUsage, docs/benchmarks.md and bench/fwp/run.sh.
#include "fwp_bench.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "plume/fwp/process_usage.h"
#include "report.h"

namespace plume::bench {

std::string host_and_load() { return host_line() + "; load average " + load_average(); }

uint64_t cpu_ns_of(pid_t pid) {
  const auto usage = fwp::process_usage(pid);
  return usage ? usage->cpu_ns : 0;
}

double pct(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  return q == 0.5 ? median(v) : percentile(v, q);
}

int fail_with(const char* what, const SysError& e) {
  std::fprintf(stderr, "fwp_bench %s: %s\n", what, e.message().c_str());
  return 1;
}

int skip_without(const char* what, const char* tool, const char* package) {
  std::fprintf(stderr,
               "fwp_bench %s: skipped: no %s on PATH or in /usr/local/sbin, /usr/local/bin, /usr/sbin, "
               "/usr/bin, /sbin, /bin "
               "(Debian package %s; or name it with --%s, or leave its peer out)\n",
               what, tool, package, tool);
  return 77;  // ctest's SKIP_RETURN_CODE, as without root
}

}  // namespace plume::bench

namespace {

using namespace plume;
using namespace plume::bench;

const char* kUsage = R"(usage: fwp_bench start|churn|density --handler PATH [options]
  --handler PATH           bench/fwp/first_handler (the libplume app; static)
  --binary PATH            apps/first_instruction (start: the local peers' program)
  --ns-holder PATH         fwp/plume-ns-holder: each tenant's templates share its namespaces,
                           as in plumed (default: the build's; "": namespaces per template)
  --spawn-helper PATH      fwp/plume-spawn, the spawn helper plumed execs (default: the build's)
  --out DIR                output directory (default bench/results/fwp); each subcommand writes
                           DIR/start/, DIR/churn/ or DIR/density/
  --command TEXT           the command recorded in the reports
start:   --iterations N (1000)  --warmup N (10)  --crun-iterations N (100)  --pool-size N (8)
         --peers LIST (fwp_pool,fwp_spin,bare_wake,fwp_fork,bare_fork,fork_exec,vfork_exec,posix_spawn,bwrap,crun,
                       plus plume_fwp and plume_exec when --plume-socket is given;
                       plume_fwp_spin only when named)
         --plume-socket PATH  --plume-token-file PATH  --plume-tenant NAME (demo)
         --bwrap PATH  --crun PATH
churn:   --seconds S (30, per peer)  --pool-size N (8)  --peers LIST (fwp_pool,fwp_fork,fork_exec,posix_spawn)
density: --tenants N (10)  --per-tenant N (100)  --plain N (1000)  --bwraps N (1000)
         --idle-seconds N (5)  --resident-starts N (200)
         --plume-socket PATH  --plume-token-file PATH  (also plumed at rest, as many parked)
)";

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> parts;
  std::stringstream in(s);
  for (std::string p; std::getline(in, p, ',');) {
    if (!p.empty()) parts.push_back(p);
  }
  return parts;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
    std::fputs(kUsage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  const std::string sub = argv[1];
  FwpOptions o;
  std::string token_file;
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) {
      std::fprintf(stderr, "fwp_bench: %s needs a value (see --help)\n", a.c_str());
      return 2;
    }
    const std::string v = argv[++i];
    char* end = nullptr;
    const double num = std::strtod(v.c_str(), &end);
    const bool is_num = end != v.c_str() && *end == '\0' && num >= 0 && num <= 1e7;
    auto count = [&](auto& dst) {
      if (!is_num) {
        std::fprintf(stderr, "fwp_bench: %s: not a number: %s\n", a.c_str(), v.c_str());
        std::exit(2);
      }
      dst = static_cast<std::remove_reference_t<decltype(dst)>>(num);
    };
    if (a == "--handler") o.handler = v;
    else if (a == "--binary") o.binary = v;
    else if (a == "--ns-holder") o.ns_holder = v;
    else if (a == "--spawn-helper") o.spawn_helper = v;
    else if (a == "--out") o.out = v;
    else if (a == "--command") o.command = v;
    else if (a == "--iterations") count(o.iterations);
    else if (a == "--warmup") count(o.warmup);
    else if (a == "--crun-iterations") count(o.crun_iterations);
    else if (a == "--pool-size") count(o.pool_size);
    else if (a == "--peers") o.peers = split(v);
    else if (a == "--plume-socket") o.plume.socket = v;
    else if (a == "--plume-token-file") token_file = v;
    else if (a == "--plume-tenant") o.plume.tenant = v;
    else if (a == "--bwrap") o.bwrap = v;
    else if (a == "--crun") o.crun = v;
    else if (a == "--seconds") count(o.seconds);
    else if (a == "--tenants") count(o.tenants);
    else if (a == "--per-tenant") count(o.per_tenant);
    else if (a == "--plain") count(o.plain);
    else if (a == "--bwraps") count(o.bwraps);
    else if (a == "--idle-seconds") count(o.idle_seconds);
    else if (a == "--resident-starts") count(o.resident_starts);
    else {
      std::fprintf(stderr, "fwp_bench: unknown flag %s (see --help)\n", a.c_str());
      return 2;
    }
  }
  if (o.command.empty()) {
    for (int i = 0; i < argc; ++i) o.command += (i ? " " : "") + std::string(argv[i]);
  }
  if (o.handler.empty()) {
    std::fprintf(stderr, "fwp_bench: --handler is required (see --help)\n");
    return 2;
  }
  if (!token_file.empty()) {
    std::ifstream in(token_file);
    if (!std::getline(in, o.plume.admin_token)) {
      std::fprintf(stderr, "fwp_bench: cannot read %s\n", token_file.c_str());
      return 2;
    }
  }
  if (o.bwrap.empty()) o.bwrap = find_tool("bwrap");
  if (o.crun.empty()) o.crun = find_tool("crun");
  if (::geteuid() != 0) {
    std::fprintf(stderr, "fwp_bench: needs root (namespaces, cgroups, uid maps)\n");
    return 77;  // ctest's SKIP_RETURN_CODE
  }
  if (sub == "start") return run_start(o);
  if (sub == "churn") return run_churn(o);
  if (sub == "density") return run_density(o);
  std::fprintf(stderr, "fwp_bench: unknown subcommand %s\n", sub.c_str());
  return 2;
}
