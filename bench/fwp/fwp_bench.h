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

int run_start(const FwpOptions& o);
int run_churn(const FwpOptions& o);
int run_density(const FwpOptions& o);

// Helpers shared by the subcommands.
std::string host_and_load();  // "<date>, Linux <release>, N CPUs; load average a b c"
// (fixed() and write_file() come from bench/spawn/report.h)
double pct(std::vector<double> v, double q);  // sorts a copy; nearest rank; median averages
int fail_with(const char* what, const SysError& e);
// A peer needs a tool this host lacks: says so and returns 77 (a skip, for the smoke tests).
int skip_without(const char* what, const char* tool, const char* package);

}  // namespace plume::bench
