// fwp_push_bench: a client that sends a running instance more than it can read at once, through
// plumed's control API (POST /v1/workers/<id>/messages, --batch messages a request). The instance
// (bench/fwp/slow_consumer) spends --work-us of CPU on each message, so the channel fills and the
// client must wait for room. Peers, taking turns on one instance of one plumed:
//   wait_for_room  each request says "wait_for_room_ms": plumed holds it until the channel has
//                  room (woken by the channel's space bell) and answers once it is in;
//   retry_at_once  each 429 channel_full is sent again at once;
//   retry_1ms      ... after 1 ms (a client's usual back-off).
// A slice is --messages messages, then "sync", answered once the instance has worked through all of
// them: its time is the whole push. Reported, in <out>/summary.md and samples.csv, per peer, the
// medians over --slices slices of: messages/s (and its ratio to the instance's own rate, 10^6 /
// work-us), requests made and refused, plumed's CPU time and the client's. Needs root (exit 77).
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
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

double now_s() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

double self_cpu_ms() {
  rusage ru{};
  ::getrusage(RUSAGE_SELF, &ru);
  return (static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
          static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3);
}

enum class Way { wait_for_room, retry_at_once, retry_1ms };

struct Slice {
  double seconds = 0, plumed_cpu_ms = 0, client_cpu_ms = 0;
  int requests = 0, refused = 0;
};

struct Peer {
  std::string name;
  Way way;
  std::vector<Slice> slices;
};

double median_of(const std::vector<Slice>& slices, double (*field)(const Slice&)) {
  std::vector<double> v;
  v.reserve(slices.size());
  for (const Slice& s : slices) v.push_back(field(s));
  std::sort(v.begin(), v.end());
  return median(v);
}

int run(int argc, char** argv) {
  std::string plumed, consumer, out = "bench/results/fwp/push";
  int messages = 800, batch = 8, slices = 5, work_us = 100;
  bool sweep = false;
  CommandLine args("fwp_push_bench", argc, argv);
  while (args.next()) {
    const std::string& a = args.flag();
    if (a == "--plumed") plumed = args.value();
    else if (a == "--consumer") consumer = args.value();
    else if (a == "--out") out = args.value();
    else if (a == "--messages") messages = args.int_value();
    else if (a == "--batch") batch = args.int_value();
    else if (a == "--slices") slices = args.int_value();
    else if (a == "--work-us") work_us = args.int_value();
    else if (a == "--sweep") sweep = true;
    else {
      std::fprintf(stderr,
                   "usage: fwp_push_bench --plumed PLUMED --consumer SLOW_CONSUMER [--messages N] [--batch B] "
                   "[--work-us US] [--slices S] [--sweep] [--out DIR]\n");
      return 2;
    }
  }
  const std::string& command = args.command();
  if (plumed.empty() || consumer.empty() || messages < 1 || batch < 1 || batch > 16 || slices < 1 || work_us < 0) {
    std::fprintf(stderr, "fwp_push_bench: --plumed and --consumer are required; --batch 1-16 (the channel's slots)\n");
    return 2;
  }
  if (::geteuid() != 0) {
    std::fprintf(stderr, "fwp_push_bench: needs root (plumed makes cgroups and namespaces); skipped\n");
    return 77;
  }
  char tmpl[] = "/tmp/plume-pushbench-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) return std::perror("mkdtemp"), 1;
  const std::string root = tmpl;
  ::chmod(root.c_str(), 0711);  // plumed's workers reach its runtime directory below it
  PlumedUnderTest p;
  std::string error, instance;
  auto cleanup = [&] {
    stop_plumed(p);
    std::error_code ec;
    std::filesystem::remove_all(root, ec);
  };
  const std::string work = "work " + std::to_string(work_us);
  if (!start_plumed(plumed, root + "/plumed", "pushbench", sweep ? "off" : "", p, error) ||
      (instance = start_instance(p, "slow", consumer, work, work, error)).empty()) {
    std::fprintf(stderr, "fwp_push_bench: %s\n", error.c_str());
    cleanup();
    return 1;
  }

  UnixHttpClient client(p.socket);
  const std::string target = "/v1/workers/" + instance + "/messages";
  const char* token = PlumedUnderTest::kTenantToken;
  std::vector<std::string> payload;
  payload.reserve(static_cast<size_t>(batch));
  for (int i = 0; i < batch; ++i) payload.push_back("m" + std::to_string(i));
  const std::string waiting = json{{"messages", payload}, {"wait_for_room_ms", 60000}}.dump();
  const std::string at_once = json{{"messages", payload}}.dump();
  const std::string sync = json{{"messages", {"sync"}}, {"replies", 1}, {"timeout_ms", 60000}, {"wait_for_room_ms", 60000}}.dump();
  // One slice: every message in (each request whole), then the sync answered.
  auto push = [&](Way way, Slice& s) -> bool {
    for (int sent = 0; sent < messages;) {
      auto r = client.request("POST", target, token, way == Way::wait_for_room ? waiting : at_once);
      ++s.requests;
      if (r.ok() && r->status == 429 && way != Way::wait_for_room) {
        ++s.refused;
        if (way == Way::retry_1ms) std::this_thread::sleep_for(std::chrono::milliseconds(1));
        continue;
      }
      if (!r.ok() || r->status != 200) {
        error = r.ok() ? std::to_string(r->status) + " " + r->body : r.error().message();
        return false;
      }
      sent += batch;
    }
    auto r = client.request("POST", target, token, sync);
    if (!r.ok() || r->status != 200 || r->body.find("\"replies\":[\"sync\"]") == std::string::npos) {
      error = "sync: " + (r.ok() ? std::to_string(r->status) + " " + r->body : r.error().message());
      return false;
    }
    return true;
  };
  std::vector<Peer> peers = {{"wait_for_room", Way::wait_for_room, {}},
                             {"retry_at_once", Way::retry_at_once, {}},
                             {"retry_1ms", Way::retry_1ms, {}}};
  bool ok = true;
  for (int round = 0; round < slices && ok; ++round) {
    for (Peer& peer : peers) {
      Slice s;
      const double t0 = now_s(), plumed0 = cpu_ms(p.pid), client0 = self_cpu_ms();
      ok = push(peer.way, s);
      s.seconds = now_s() - t0;
      s.plumed_cpu_ms = cpu_ms(p.pid) - plumed0;
      s.client_cpu_ms = self_cpu_ms() - client0;
      peer.slices.push_back(s);
      if (!ok) break;
    }
  }
  cleanup();
  if (!ok) {
    std::fprintf(stderr, "fwp_push_bench: a request failed: %s\n", error.c_str());
    return 1;
  }

  std::string csv = "peer,slice,seconds,requests,refused,plumed_cpu_ms,client_cpu_ms\n";
  for (const Peer& peer : peers)
    for (size_t i = 0; i < peer.slices.size(); ++i) {
      const Slice& s = peer.slices[i];
      csv += peer.name + "," + std::to_string(i) + "," + fixed(s.seconds, 4) + "," + std::to_string(s.requests) + "," +
             std::to_string(s.refused) + "," + fixed(s.plumed_cpu_ms, 0) + "," + fixed(s.client_cpu_ms, 1) + "\n";
    }
  const double own_rate = work_us > 0 ? 1e6 / work_us : 0;
  std::string md = "# Pushing messages into an instance that reads slower than they come\n\n`" + command + "`\n\n" +
                   host_line() + "; load average " + load_average() + "; plumed " +
                   (sweep ? "sweeping (PLUME_FUTEX_WAIT=off)" : "with futex waits") + "\n\n" + std::to_string(slices) +
                   " slices per peer, taken in turn; a slice is " + std::to_string(messages) + " messages in requests of " +
                   std::to_string(batch) + ", then a sync answered. The instance works " + std::to_string(work_us) +
                   " µs of CPU per message (" + fixed(own_rate, 0) +
                   " messages/s on its own). Medians over the slices; CPU in ms per slice (plumed's at clock-tick "
                   "resolution).\n\n| peer | messages/s | / instance's own rate | requests | refused (429) | plumed CPU | "
                   "client CPU |\n|---|---:|---:|---:|---:|---:|---:|\n";
  for (const Peer& peer : peers) {
    const double secs = median_of(peer.slices, [](const Slice& s) { return s.seconds; });
    const double rate = (messages + 1) / secs;
    md += "| " + peer.name + " | " + fixed(rate, 0) + " | " + (own_rate > 0 ? fixed(rate / own_rate, 2) : "–") + " | " +
          fixed(median_of(peer.slices, [](const Slice& s) { return static_cast<double>(s.requests); }), 0) + " | " +
          fixed(median_of(peer.slices, [](const Slice& s) { return static_cast<double>(s.refused); }), 0) + " | " +
          fixed(median_of(peer.slices, [](const Slice& s) { return s.plumed_cpu_ms; }), 0) + " ms | " +
          fixed(median_of(peer.slices, [](const Slice& s) { return s.client_cpu_ms; }), 1) + " ms |\n";
  }
  return write_samples_and_summary(out, csv, md);
}

}  // namespace
}  // namespace plume::bench

int main(int argc, char** argv) {
  try {
    return plume::bench::run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fwp_push_bench: %s\n", e.what());
    return 1;
  }
}
