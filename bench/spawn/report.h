// Turns the samples of bench/spawn into its outputs: samples.csv (every start), summary.csv and
// summary.md (median, p99, ratio of medians against fork+exec), cdf_<peer>.dat and plot_vars.gp
// for plot.gp.
#pragma once

#include <string>
#include <vector>

#include "peers.h"
#include "plume/base/sys_error.h"

namespace plume::bench {

struct PeerSamples {
  std::string peer;
  std::vector<Sample> samples;
};

struct RunInfo {
  std::string command;  // how the benchmark was invoked
  int iterations = 0;
  int crun_iterations = 0;
  int warmup = 0;
};

// Nearest-rank percentile (q in (0, 1]) of an ascending vector; the median averages the middle two.
double percentile(const std::vector<double>& sorted, double q);
double median(const std::vector<double>& sorted);

SysResult<void> write_report(const std::string& out_dir, const RunInfo& info,
                             const std::vector<PeerSamples>& results);

}  // namespace plume::bench
