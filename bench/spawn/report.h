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

// Pieces of a report, for every benchmark that writes one.
std::string fixed(double v, int digits);  // "%.*f"
SysResult<void> write_file(const std::string& path, const std::string& text);
// <out_dir>/samples.csv and <out_dir>/summary.md (the directory made if need be), and the summary
// on stdout: a main's last step. 0, or 1 with the error on stderr.
int write_samples_and_summary(const std::string& out_dir, const std::string& csv, const std::string& md);
std::string host_line();     // "<UTC date>, Linux <release> <machine>, N CPUs"
// Other work on the machine shows in the figures: say how busy it was ("a b c", /proc/loadavg).
std::string load_average();

SysResult<void> write_report(const std::string& out_dir, const RunInfo& info,
                             const std::vector<PeerSamples>& results);

}  // namespace plume::bench
