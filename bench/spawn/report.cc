#include "report.h"

#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <utility>

namespace plume::bench {
namespace {

struct Stats {
  std::vector<double> first_us;  // t1 - t0, ascending
  std::vector<double> exit_us;   // t2 - t0, ascending
};

Stats stats_of(const std::vector<Sample>& samples) {
  Stats st;
  for (const auto& s : samples) {
    st.first_us.push_back(static_cast<double>(s.t1_ns - s.t0_ns) / 1000.0);
    st.exit_us.push_back(static_cast<double>(s.t2_ns - s.t0_ns) / 1000.0);
  }
  std::sort(st.first_us.begin(), st.first_us.end());
  std::sort(st.exit_us.begin(), st.exit_us.end());
  return st;
}

}  // namespace

std::string fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

namespace {

// Milliseconds in the markdown table: the figures span 0.2 ms to 30 ms.
std::string ms(double us) { return fixed(us / 1000.0, us < 10'000 ? 3 : 2); }

}  // namespace

SysResult<void> write_file(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
  out.close();
  if (!out) return fail(plain_error("write", path));
  return {};
}

int write_samples_and_summary(const std::string& out_dir, const std::string& csv, const std::string& md) {
  std::error_code ec;
  std::filesystem::create_directories(out_dir, ec);
  for (const auto& [name, text] : {std::pair{"/samples.csv", &csv}, std::pair{"/summary.md", &md}}) {
    if (auto w = write_file(out_dir + name, *text); !w.ok()) {
      std::fprintf(stderr, "%s\n", w.error().message().c_str());
      return 1;
    }
  }
  std::fputs(md.c_str(), stdout);
  return 0;
}

std::string host_line() {
  utsname u{};
  ::uname(&u);
  char date[32] = {};
  std::time_t now = std::time(nullptr);
  std::strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  return std::string(date) + ", Linux " + u.release + " " + u.machine + ", " +
         std::to_string(::sysconf(_SC_NPROCESSORS_ONLN)) + " CPUs";
}

std::string load_average() {
  std::ifstream in("/proc/loadavg");
  std::string one, five, fifteen;
  in >> one >> five >> fifteen;
  return one + " " + five + " " + fifteen;
}

double percentile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return NAN;
  auto rank = static_cast<size_t>(std::ceil(q * static_cast<double>(sorted.size())));
  return sorted[std::clamp<size_t>(rank, 1, sorted.size()) - 1];
}

double median(const std::vector<double>& sorted) {
  if (sorted.empty()) return NAN;
  size_t n = sorted.size();
  return n % 2 == 1 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0;
}

SysResult<void> write_report(const std::string& out_dir, const RunInfo& info,
                             const std::vector<PeerSamples>& results) {
  std::ostringstream samples;
  samples << "peer,iteration,start_to_first_instruction_us,start_to_exit_us\n";
  for (const auto& r : results) {
    for (size_t i = 0; i < r.samples.size(); ++i) {
      const auto& s = r.samples[i];
      samples << r.peer << ',' << i << ',' << fixed(static_cast<double>(s.t1_ns - s.t0_ns) / 1000.0, 1)
              << ',' << fixed(static_cast<double>(s.t2_ns - s.t0_ns) / 1000.0, 1) << '\n';
    }
  }
  if (auto ok = write_file(out_dir + "/samples.csv", samples.str()); !ok) return ok;

  double base_exit = NAN;
  for (const auto& r : results) {
    if (r.peer == "fork_exec") base_exit = median(stats_of(r.samples).exit_us);
  }

  std::ostringstream csv;
  std::ostringstream md;
  csv << "peer,starts,median_first_instruction_us,p99_first_instruction_us,median_exit_us,"
         "p99_exit_us,median_exit_vs_fork_exec\n";
  md << "Measured " << host_line() << "; " << info.warmup << " warm-up rounds, then "
     << info.iterations << " interleaved rounds"
     << (info.crun_iterations > 0 ? " (crun: " + std::to_string(info.crun_iterations) + ")" : "")
     << "; load average at the end: " << load_average() << ".\n"
     << "Command: `" << info.command << "`\n\n"
     << "| peer | starts | start → first instruction, median | p99 | start → exit observed, median | p99 "
        "| exit median vs fork+exec |\n"
     << "|---|---:|---:|---:|---:|---:|---:|\n";
  std::ostringstream vars;
  vars << "peers = \"";
  for (const auto& r : results) {
    auto st = stats_of(r.samples);
    double ratio = median(st.exit_us) / base_exit;
    csv << r.peer << ',' << r.samples.size() << ',' << fixed(median(st.first_us), 1) << ','
        << fixed(percentile(st.first_us, 0.99), 1) << ',' << fixed(median(st.exit_us), 1) << ','
        << fixed(percentile(st.exit_us, 0.99), 1) << ',' << (std::isnan(ratio) ? "" : fixed(ratio, 2))
        << '\n';
    md << "| " << r.peer << " | " << r.samples.size() << " | " << ms(median(st.first_us)) << " ms | "
       << ms(percentile(st.first_us, 0.99)) << " ms | " << ms(median(st.exit_us)) << " ms | "
       << ms(percentile(st.exit_us, 0.99)) << " ms | "
       << (std::isnan(ratio) ? std::string("–") : fixed(ratio, 2) + "×") << " |\n";

    // One CDF file per peer: each metric sorted on its own, against the cumulative fraction.
    std::ostringstream cdf;
    cdf << "# fraction start_to_first_instruction_us start_to_exit_us\n";
    for (size_t i = 0; i < st.exit_us.size(); ++i) {
      cdf << fixed(static_cast<double>(i + 1) / static_cast<double>(st.exit_us.size()), 5) << ' '
          << fixed(st.first_us[i], 1) << ' ' << fixed(st.exit_us[i], 1) << '\n';
    }
    if (auto ok = write_file(out_dir + "/cdf_" + r.peer + ".dat", cdf.str()); !ok) return ok;
    vars << (&r == &results.front() ? "" : " ") << r.peer;
  }
  vars << "\"\n";
  if (auto ok = write_file(out_dir + "/summary.csv", csv.str()); !ok) return ok;
  if (auto ok = write_file(out_dir + "/summary.md", md.str()); !ok) return ok;
  return write_file(out_dir + "/plot_vars.gp", vars.str());
}

}  // namespace plume::bench
