// fwp_messages_bench: what a round trip to a running featherweight instance costs through plumed's
// control API (POST /v1/workers/<id>/messages with "replies": 1), against the floor of any
// request over a Unix socket. Peers, side by side in one run:
//   api_futex  plumed waits on the instance's channel doorbell with an io_uring futex wait
//              (Linux 6.7+): the request wakes plumed, plumed rings the instance, the instance's
//              reply rings plumed, plumed answers;
//   api_waitv  a second plumed started with PLUME_FUTEX_WAIT=threads, as on kernels 5.16-6.6: it
//              waits on the doorbell from a futex_waitv thread, which wakes the loop by an eventfd;
//   api_sweep  a third started with PLUME_FUTEX_WAIT=off, as on kernels before 5.16: it reads
//              running instances' channels every 10 ms, every 1 ms while a request waits;
//   unix_echo  a plain process echoing on a Unix stream socket: one write, one read each way, no
//              HTTP, no plumed (the floor).
// The instance is apps/echo (one reply per message). Slices of --rounds round trips alternate
// between the peers, --slices each, so that the machine's drift hits all alike. Reported, in
// <out>/summary.md and samples.csv: median and p99 per peer, and each median's ratio to
// unix_echo's. Needs root (plumed makes cgroups and namespaces; exit 77 otherwise).
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "command_line.h"
#include "plumed_under_test.h"
#include "report.h"
#include "unix_http_client.h"

namespace plume::bench {
namespace {

using nlohmann::json;

uint64_t now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000u + static_cast<uint64_t>(ts.tv_nsec);
}

struct RoundTrips {
  std::string name;
  std::vector<double> us;  // round trips, microseconds
};

int run(int argc, char** argv) {
  std::string plumed, echo, out = "bench/results/fwp/messages";
  int rounds = 200, slices = 10;
  CommandLine args("fwp_messages_bench", argc, argv);
  while (args.next()) {
    const std::string& a = args.flag();
    if (a == "--plumed") plumed = args.value();
    else if (a == "--echo") echo = args.value();
    else if (a == "--out") out = args.value();
    else if (a == "--rounds") rounds = args.int_value();
    else if (a == "--slices") slices = args.int_value();
    else {
      std::fprintf(stderr, "usage: fwp_messages_bench --plumed PLUMED --echo PLUME_ECHO [--rounds N] [--slices S] [--out DIR]\n");
      return 2;
    }
  }
  const std::string& command = args.command();
  if (plumed.empty() || echo.empty() || rounds < 1 || slices < 1) {
    std::fprintf(stderr, "fwp_messages_bench: --plumed and --echo are required; --rounds and --slices at least 1\n");
    return 2;
  }
  if (::geteuid() != 0) {
    std::fprintf(stderr, "fwp_messages_bench: needs root (plumed makes cgroups and namespaces); skipped\n");
    return 77;
  }
  char tmpl[] = "/tmp/plume-msgbench-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) return std::perror("mkdtemp"), 1;
  const std::string root = tmpl;
  ::chmod(root.c_str(), 0711);  // plumed's workers reach its runtime directory below it

  // One private plumed per way of waiting on channels, each with an echo instance.
  struct ApiPeer {
    std::string name, futex_wait;  // PLUME_FUTEX_WAIT for it ("" = unset)
    PlumedUnderTest plumed;
    std::string instance;
  };
  std::vector<ApiPeer> api = {{"api_futex", "", {}, {}}, {"api_waitv", "threads", {}, {}}, {"api_sweep", "off", {}, {}}};
  std::string error;
  auto cleanup = [&] {
    for (ApiPeer& a : api) stop_plumed(a.plumed);
    std::error_code ec;
    std::filesystem::remove_all(root, ec);
  };
  for (ApiPeer& a : api) {
    if (!start_plumed(plumed, root + "/" + a.name, "msgbench", a.futex_wait, a.plumed, error) ||
        (a.instance = start_instance(a.plumed, "echo", echo, "warm", "warm", error)).empty()) {
      std::fprintf(stderr, "fwp_messages_bench: %s: %s\n", a.name.c_str(), error.c_str());
      cleanup();
      return 1;
    }
  }

  // The floor: a plain echo process on a Unix stream socket.
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return std::perror("socketpair"), cleanup(), 1;
  const pid_t echoer = ::fork();
  if (echoer == 0) {
    ::close(sv[0]);  // EOF reaches it once the bench closes its end
    char buf[256];
    for (;;) {
      const ssize_t n = ::read(sv[1], buf, sizeof buf);
      if (n <= 0 || ::write(sv[1], buf, static_cast<size_t>(n)) != n) ::_exit(0);
    }
  }
  ::close(sv[1]);

  std::vector<UnixHttpClient> clients;
  clients.reserve(api.size());
  for (const ApiPeer& a : api) clients.emplace_back(a.plumed.socket);
  const std::string body = json{{"messages", "ping"}, {"replies", 1}, {"timeout_ms", 5000}}.dump();
  std::vector<RoundTrips> peers;
  peers.reserve(api.size() + 1);
  for (const ApiPeer& a : api) peers.push_back({a.name, {}});
  peers.push_back({"unix_echo", {}});  // last: the floor
  auto api_round = [&](size_t at) -> bool {
    auto r = clients[at].request("POST", "/v1/workers/" + api[at].instance + "/messages", PlumedUnderTest::kTenantToken, body);
    if (!r.ok() || r->status != 200 || r->body.find("\"replies\":[\"ping\"]") == std::string::npos) {
      error = r.ok() ? std::to_string(r->status) + " " + r->body : r.error().message();
      return false;
    }
    return true;
  };
  bool ok = true;
  for (int s = 0; s < slices && ok; ++s) {
    for (size_t at = 0; at < peers.size() && ok; ++at) {
      for (int i = 0; i < rounds && ok; ++i) {
        const uint64_t t0 = now_ns();
        if (at < api.size()) {
          ok = api_round(at);
        } else {
          char buf[8];
          ok = ::write(sv[0], "ping", 4) == 4 && ::read(sv[0], buf, sizeof buf) == 4;
          if (!ok) error = "the echo process did not answer";
        }
        peers[at].us.push_back(static_cast<double>(now_ns() - t0) / 1e3);
      }
    }
  }
  ::close(sv[0]);
  ::waitpid(echoer, nullptr, 0);
  cleanup();
  if (!ok) {
    std::fprintf(stderr, "fwp_messages_bench: a round trip failed: %s\n", error.c_str());
    return 1;
  }

  std::string csv = "peer,round,us\n";
  for (const RoundTrips& p : peers)
    for (size_t i = 0; i < p.us.size(); ++i) csv += p.name + "," + std::to_string(i) + "," + fixed(p.us[i], 2) + "\n";
  std::vector<double> floor_sorted = peers.back().us;
  std::sort(floor_sorted.begin(), floor_sorted.end());
  const double floor = median(floor_sorted);
  std::string md = "# One message round trip to a running instance\n\n`" + command + "`\n\n" + host_line() +
                   "; load average " + load_average() + "\n\n" + std::to_string(slices) + " slices of " +
                   std::to_string(rounds) + " round trips per peer, taken in turn.\n\n" +
                   "| peer | round trips | median | p99 | median / unix_echo |\n|---|---:|---:|---:|---:|\n";
  for (RoundTrips& p : peers) {
    std::vector<double> sorted = p.us;
    std::sort(sorted.begin(), sorted.end());
    md += "| " + p.name + " | " + std::to_string(sorted.size()) + " | " + fixed(median(sorted), 1) + " µs | " +
          fixed(percentile(sorted, 0.99), 1) + " µs | " + fixed(median(sorted) / floor, 1) + "× |\n";
  }
  return write_samples_and_summary(out, csv, md);
}

}  // namespace
}  // namespace plume::bench

int main(int argc, char** argv) {
  try {
    return plume::bench::run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fwp_messages_bench: %s\n", e.what());
    return 1;
  }
}
