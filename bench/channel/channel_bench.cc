// channel_bench: round-trip latency and one-way throughput of Plume's channel against a pipe, a
// Unix SOCK_SEQPACKET pair and an eventfd-doorbelled shared ring, between a parent and a forked
// child, side by side in one run. Peers are interleaved in rounds (the order rotates each round)
// so that a noisy neighbour hurts every peer alike. Nothing is pinned.
//
//   channel_bench [--peers a,b] [--rounds 5] [--rtts 20000] [--warmup 1000] [--stream 200000]
//                 [--size 64] [--out bench/results/channel]
//
// Writes to --out: summary.csv, rounds.csv, summary.md, cdf_<peer>.dat, plot_vars.gp
// (plot with: gnuplot -e "dir='<out>'" bench/channel/plot.gp).
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "transports.h"

namespace plume::bench {
namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  std::vector<std::string> peers = transport_names();
  int rounds = 5;
  uint64_t rtts = 20000;
  uint64_t warmup = 1000;
  uint64_t stream = 200000;
  size_t size = 64;
  std::string out = "bench/results/channel";
};

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr,
               "channel_bench: %s\nusage: channel_bench [--peers a,b] [--rounds N] [--rtts N] "
               "[--warmup N] [--stream N] [--size BYTES] [--out DIR]\npeers:",
               why);
  for (const auto& p : transport_names()) std::fprintf(stderr, " %s", p.c_str());
  std::fprintf(stderr, "\n");
  std::exit(2);
}

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');)
    if (!item.empty()) out.push_back(item);
  return out;
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) usage(("missing value for " + a).c_str());
    const std::string v = argv[++i];
    if (a == "--peers") o.peers = split(v);
    else if (a == "--rounds") o.rounds = std::stoi(v);
    else if (a == "--rtts") o.rtts = std::stoull(v);
    else if (a == "--warmup") o.warmup = std::stoull(v);
    else if (a == "--stream") o.stream = std::stoull(v);
    else if (a == "--size") o.size = std::stoull(v);
    else if (a == "--out") o.out = v;
    else usage(("unknown option " + a).c_str());
  }
  for (const auto& p : o.peers)
    if (!make_transport(p, o.size)) usage(("unknown peer " + p).c_str());
  if (o.size < 8 || o.size > 120) usage("--size must be in [8, 120] (one channel slot)");
  if (o.rounds < 1 || o.rtts < 1 || o.stream < 1) usage("counts must be positive");
  return o;
}

// Runs child_fn in a forked child over `t` (side 1) while the parent runs parent_fn (side 0).
void run_pair(Transport& t, const std::function<void()>& child_fn, const std::function<void()>& parent_fn) {
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) {
    std::perror("channel_bench: fork");
    std::exit(3);
  }
  if (pid == 0) {
    t.open(1);
    child_fn();
    std::_Exit(0);
  }
  t.open(0);
  parent_fn();
  int status = 0;
  if (::waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::fprintf(stderr, "channel_bench: child failed (status %d)\n", status);
    std::exit(3);
  }
}

// Round trips: the parent sends, the child echoes, the parent times each one (after a warm-up).
void measure_rtts(Transport& t, const Options& o, std::vector<double>& rtt_us) {
  const uint64_t total = o.warmup + o.rtts;
  run_pair(
      t,
      [&] {
        std::vector<std::byte> buf(o.size);
        for (uint64_t i = 0; i < total; ++i) {
          t.recv(buf.data(), o.size);
          t.send(buf.data(), o.size);
        }
      },
      [&] {
        std::vector<std::byte> msg(o.size), buf(o.size);
        for (uint64_t i = 0; i < total; ++i) {
          std::memcpy(msg.data(), &i, sizeof i);
          const auto t0 = Clock::now();
          t.send(msg.data(), o.size);
          t.recv(buf.data(), o.size);
          const auto t1 = Clock::now();
          if (std::memcmp(buf.data(), &i, sizeof i) != 0) {
            std::fprintf(stderr, "channel_bench: wrong echo at %llu\n", static_cast<unsigned long long>(i));
            std::exit(3);
          }
          if (i >= o.warmup) rtt_us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
        }
      });
}

// One-way streaming: after a go message, the child sends `stream` messages as fast as the
// transport accepts them; the parent times their arrival. Returns messages per second.
double measure_stream(Transport& t, const Options& o) {
  double rate = 0;
  run_pair(
      t,
      [&] {
        std::vector<std::byte> msg(o.size);
        t.recv(msg.data(), o.size);
        for (uint64_t i = 0; i < o.stream; ++i) {
          std::memcpy(msg.data(), &i, sizeof i);
          t.send(msg.data(), o.size);
        }
      },
      [&] {
        std::vector<std::byte> buf(o.size);
        const auto t0 = Clock::now();
        t.send(buf.data(), o.size);
        for (uint64_t i = 0; i < o.stream; ++i) {
          t.recv(buf.data(), o.size);
          if (std::memcmp(buf.data(), &i, sizeof i) != 0) {
            std::fprintf(stderr, "channel_bench: stream out of order at %llu\n", static_cast<unsigned long long>(i));
            std::exit(3);
          }
        }
        rate = static_cast<double>(o.stream) / std::chrono::duration<double>(Clock::now() - t0).count();
      });
  return rate;
}

double quantile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return 0;
  const size_t i = std::min(sorted.size() - 1, static_cast<size_t>(q * static_cast<double>(sorted.size())));
  return sorted[i];
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

struct PeerResult {
  std::vector<double> rtt_us;           // every timed round trip, all rounds
  std::vector<double> round_p50, round_p99, round_rate;
};

}  // namespace
}  // namespace plume::bench

int main(int argc, char** argv) {
  using namespace plume::bench;
  const Options o = parse(argc, argv);
  ::mkdir(o.out.c_str(), 0755);  // its parent must exist; errors show up when writing
  std::map<std::string, PeerResult> results;
  const auto started = Clock::now();
  for (int round = 0; round < o.rounds; ++round) {
    for (size_t k = 0; k < o.peers.size(); ++k) {
      const std::string& peer = o.peers[(k + static_cast<size_t>(round)) % o.peers.size()];
      PeerResult& r = results[peer];
      std::vector<double> rtts;
      rtts.reserve(o.rtts);
      auto lat = make_transport(peer, o.size);
      measure_rtts(*lat, o, rtts);
      auto thr = make_transport(peer, o.size);
      const double rate = measure_stream(*thr, o);
      std::sort(rtts.begin(), rtts.end());
      r.round_p50.push_back(quantile(rtts, 0.5));
      r.round_p99.push_back(quantile(rtts, 0.99));
      r.round_rate.push_back(rate);
      r.rtt_us.insert(r.rtt_us.end(), rtts.begin(), rtts.end());
      std::printf("round %d %-16s p50 %8.2f us  p99 %8.2f us  %10.0f msg/s\n", round + 1, peer.c_str(),
                  r.round_p50.back(), r.round_p99.back(), rate);
    }
  }
  const double took = std::chrono::duration<double>(Clock::now() - started).count();

  // Summary across rounds: latency quantiles over all samples, throughput as the median round.
  std::ofstream summary(o.out + "/summary.csv"), rounds(o.out + "/rounds.csv"), md(o.out + "/summary.md"),
      vars(o.out + "/plot_vars.gp");
  if (!summary || !rounds || !md || !vars) {
    std::fprintf(stderr, "channel_bench: cannot write into %s\n", o.out.c_str());
    return 3;
  }
  summary << "peer,samples,rtt_p50_us,rtt_p99_us,rtt_p999_us,rtt_mean_us,msgs_per_s,rtt_p50_vs_pipe,msgs_per_s_vs_pipe,msgs_per_s_best\n";
  rounds << "peer,round,rtt_p50_us,rtt_p99_us,msgs_per_s\n";
  md << "| peer | RTT p50 (µs) | RTT p99 (µs) | msgs/s (median round) | msgs/s (best round) | p50 vs pipe | msgs/s vs pipe |\n"
     << "|---|---:|---:|---:|---:|---:|---:|\n";
  double pipe_p50 = 0, pipe_rate = 0;
  if (auto it = results.find("pipe"); it != results.end()) {
    auto s = it->second.rtt_us;
    std::sort(s.begin(), s.end());
    pipe_p50 = quantile(s, 0.5);
    pipe_rate = median(it->second.round_rate);
  }
  vars << "peers = \"";
  std::printf("\n%-16s %10s %10s %12s %12s %10s %10s\n", "peer", "p50 us", "p99 us", "msgs/s", "best msgs/s",
              "p50/pipe", "rate/pipe");
  for (const auto& peer : o.peers) {
    PeerResult& r = results[peer];
    std::sort(r.rtt_us.begin(), r.rtt_us.end());
    const double p50 = quantile(r.rtt_us, 0.5), p99 = quantile(r.rtt_us, 0.99), p999 = quantile(r.rtt_us, 0.999);
    double mean = 0;
    for (double v : r.rtt_us) mean += v;
    mean /= static_cast<double>(r.rtt_us.size());
    const double rate = median(r.round_rate);
    const double best = *std::max_element(r.round_rate.begin(), r.round_rate.end());
    const double lat_ratio = pipe_p50 > 0 ? p50 / pipe_p50 : 0, rate_ratio = pipe_rate > 0 ? rate / pipe_rate : 0;
    char line[512];
    std::snprintf(line, sizeof line, "%s,%zu,%.3f,%.3f,%.3f,%.3f,%.0f,%.3f,%.3f,%.0f\n", peer.c_str(),
                  r.rtt_us.size(), p50, p99, p999, mean, rate, lat_ratio, rate_ratio, best);
    summary << line;
    std::snprintf(line, sizeof line, "| %s | %.2f | %.2f | %.0f | %.0f | %.2f× | %.2f× |\n", peer.c_str(), p50, p99, rate,
                  best, lat_ratio, rate_ratio);
    md << line;
    std::printf("%-16s %10.2f %10.2f %12.0f %12.0f %10.2f %10.2f\n", peer.c_str(), p50, p99, rate, best, lat_ratio,
                rate_ratio);
    for (size_t i = 0; i < r.round_rate.size(); ++i)
      rounds << peer << "," << i + 1 << "," << r.round_p50[i] << "," << r.round_p99[i] << "," << r.round_rate[i]
             << "\n";
    // CDF: 400 quantiles, finer in the tail.
    std::ofstream cdf(o.out + "/cdf_" + peer + ".dat");
    cdf << "# fraction rtt_us\n";
    for (int i = 0; i <= 400; ++i) {
      const double q = i < 300 ? i / 300.0 * 0.99 : 0.99 + (i - 300) / 100.0 * 0.0099;
      cdf << q << " " << quantile(r.rtt_us, q) << "\n";
    }
    vars << peer << " ";
  }
  vars << "\"\n";
  md << "\n" << o.rounds << " rounds × " << o.rtts << " round trips and " << o.stream
     << " streamed messages per peer per round, " << o.size << "-byte messages; run took "
     << static_cast<int>(took) << " s.\n";
  std::printf("\nwrote %s/{summary.csv,rounds.csv,summary.md,cdf_*.dat,plot_vars.gp} in %.0f s\n", o.out.c_str(), took);
  return 0;
}
