// bench/fwp: the three featherweight-process benchmarks (start latency, churn, density), one
// binary with a subcommand each. See docs/benchmarks.md; bench/fwp/run.sh runs them all.
#pragma once

#include <string>
#include <vector>

#include "peers.h"
#include "report.h"

namespace plume::bench {

struct FwpOptions {
  std::string binary;   // apps/first_instruction (local peers' program)
  std::string handler;  // bench/fwp/first_handler (the libplume app)
  std::string ns_holder = PLUME_NS_HOLDER_PATH;  // fwp/plume-ns-holder: a tenant's namespaces
  std::string spawn_helper = PLUME_SPAWN_PATH;   // fwp/plume-spawn: plumed's spawn helper
  std::string out = "bench/results/fwp";
  std::string command;  // recorded in the reports
  // start
  int iterations = 1000;
  int crun_iterations = 100;
  int warmup = 10;
  size_t pool_size = 8;
  std::vector<std::string> peers;  // empty: the subcommand's default
  PlumeOptions plume;              // the exec-mode peer, when plume.socket is set
  std::string bwrap;
  std::string crun;
  // churn
  double seconds = 30;
  // density
  int tenants = 10;
  int per_tenant = 100;
  int plain = 1000;
  int bwraps = 1000;
  int idle_seconds = 5;
  int resident_starts = 200;
};

// plumed at rest with `tenants` tenants (made for the purpose) × an fwp image of `handler` with a
// warm pool of `per_tenant`, all parked (plumed_idle.cc): plumed's own CPU time and context
// switches, every thread, over `idle_seconds` in which nobody asks it anything. One start per
// tenant fills the pools; plumed's /metrics is read until every pool is full, then a second of
// rest (the templates give back the channels made ahead for the fill) precedes the window.
struct PlumedIdle {
  size_t parked = 0;      // ready pool instances, summed over the tenants (plumed's /metrics)
  double setup_s = 0;     // from the first start until every pool was full
  double seconds = 0;     // the window
  double cpu_ms = 0;      // plumed's CPU time in the window (clock-tick resolution)
  uint64_t switches = 0;  // plumed's context switches in the window, voluntary and not
};
SysResult<PlumedIdle> measure_plumed_idle(const PlumeOptions& plume, const std::string& handler, int tenants,
                                          int per_tenant, int idle_seconds);

int run_start(const FwpOptions& o);
int run_churn(const FwpOptions& o);
int run_density(const FwpOptions& o);

// Helpers shared by the subcommands.
std::string host_and_load();  // "<date>, Linux <release>, N CPUs; load average a b c"
// (fixed() and write_file() come from bench/spawn/report.h)
double pct(std::vector<double> v, double q);  // sorts a copy; nearest rank; median averages
uint64_t cpu_ns_of(pid_t pid);  // utime + stime of one process, every thread (0 once it is gone)
int fail_with(const char* what, const SysError& e);
// A peer needs a tool this host lacks: says so and returns 77 (a skip, for the smoke tests).
int skip_without(const char* what, const char* tool, const char* package);

}  // namespace plume::bench
