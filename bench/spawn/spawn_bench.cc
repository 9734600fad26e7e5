// bench/spawn: how long from "start this program" to its first instruction and to its exit being
// observed, for Plume exec-mode workers and their peers, all starting the same static binary
// (apps/first_instruction), interleaved round-robin in one run so drift and noise hit all alike.
// See docs/benchmarks.md; bench/spawn/run.sh is the way to run it.
#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <linux/magic.h>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "peers.h"
#include "report.h"

namespace fs = std::filesystem;
using namespace plume;
using namespace plume::bench;

namespace {

const char* kUsage = R"(usage: spawn_bench --binary PATH [options]
  --binary PATH            apps/first_instruction (static)
  --iterations N           measured starts per peer (default 1000)
  --crun-iterations N      measured starts for crun, spread evenly over the rounds (default 100)
  --warmup N               unrecorded rounds first (default 10)
  --peers LIST             comma-separated, from fork_exec,vfork_exec,posix_spawn,bwrap,crun,plume
                           (default: all of them)
  --out DIR                output directory (default bench/results/spawn)
  --plume-socket PATH      plumed's control socket (needed for the plume peer)
  --plume-token-file PATH  file holding plumed's admin token (or --plume-token TOKEN)
  --plume-tenant NAME      tenant the workers run as (default demo)
  --bwrap PATH / --crun PATH   the tools (default: found on PATH)
  --command TEXT           the command recorded in summary.md (default: this one)
)";

struct Options {
  std::string binary;
  int iterations = 1000;
  int crun_iterations = 100;
  int warmup = 10;
  std::vector<std::string> peers = {"fork_exec", "vfork_exec", "posix_spawn", "bwrap", "crun", "plume"};
  std::string out = "bench/results/spawn";
  PlumeOptions plume;
  std::string bwrap;
  std::string crun;
  std::string command;
};

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> parts;
  std::stringstream in(s);
  for (std::string p; std::getline(in, p, sep);) {
    if (!p.empty()) parts.push_back(p);
  }
  return parts;
}

bool has(const std::vector<std::string>& v, const std::string& x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}

SysResult<Options> parse_args(int argc, char** argv) {
  Options o;
  std::string token_file;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    }
    if (i + 1 >= argc) return fail(plain_error("arguments", a + " needs a value (see --help)"));
    std::string v = argv[++i];
    auto number = [&](int& dst) -> bool {
      char* end = nullptr;
      long n = std::strtol(v.c_str(), &end, 10);
      if (*end != '\0' || n < 0 || n > 10'000'000) return false;
      dst = static_cast<int>(n);
      return true;
    };
    bool ok = true;
    if (a == "--binary") o.binary = v;
    else if (a == "--iterations") ok = number(o.iterations);
    else if (a == "--crun-iterations") ok = number(o.crun_iterations);
    else if (a == "--warmup") ok = number(o.warmup);
    else if (a == "--peers") o.peers = split(v, ',');
    else if (a == "--out") o.out = v;
    else if (a == "--plume-socket") o.plume.socket = v;
    else if (a == "--plume-token") o.plume.admin_token = v;
    else if (a == "--plume-token-file") token_file = v;
    else if (a == "--plume-tenant") o.plume.tenant = v;
    else if (a == "--bwrap") o.bwrap = v;
    else if (a == "--crun") o.crun = v;
    else if (a == "--command") o.command = v;
    else return fail(plain_error("arguments", "unknown flag " + a + " (see --help)"));
    if (!ok) return fail(plain_error("arguments", a + ": not a count: " + v));
  }
  if (o.binary.empty()) return fail(plain_error("arguments", "--binary is required (see --help)"));
  for (const auto& p : o.peers) {
    if (!has({"fork_exec", "vfork_exec", "posix_spawn", "bwrap", "crun", "plume"}, p)) {
      return fail(plain_error("arguments", "unknown peer " + p));
    }
  }
  if (!token_file.empty()) {
    std::ifstream in(token_file);
    if (!std::getline(in, o.plume.admin_token)) return fail(sys_error("read", token_file));
  }
  if (has(o.peers, "plume") && (o.plume.socket.empty() || o.plume.admin_token.empty())) {
    return fail(plain_error("arguments", "the plume peer needs --plume-socket and an admin token"));
  }
  if (o.bwrap.empty()) o.bwrap = find_tool("bwrap");
  if (o.crun.empty()) o.crun = find_tool("crun");
  if (has(o.peers, "bwrap") && o.bwrap.empty())
    return fail(plain_error("bwrap", "not found on PATH or in the sbin/bin directories"));
  if (has(o.peers, "crun") && o.crun.empty())
    return fail(plain_error("crun", "not found on PATH or in the sbin/bin directories"));
  return o;
}

int run(int argc, char** argv) {
  auto opts = parse_args(argc, argv);
  if (!opts) {
    std::fprintf(stderr, "spawn_bench: %s\n", opts.error().message().c_str());
    return 2;
  }
  Options& o = *opts;
  auto die = [](const SysError& e) {
    std::fprintf(stderr, "spawn_bench: %s\n", e.message().c_str());
    return 1;
  };

  PeerEnv env;
  env.bwrap_path = o.bwrap;
  env.crun_path = o.crun;
  auto scratch = make_scratch(o.binary, env);
  if (!scratch) return die(scratch.error());
  struct Cleanup {
    std::string dir;
    ~Cleanup() {
      std::error_code ec;
      fs::remove_all(dir, ec);
    }
  } cleanup{*scratch};

  if (has(o.peers, "crun")) {
    if (auto ok = hide_unified_cgroup(); !ok) return die(ok.error());
  }
  auto ts_fd = make_timestamp_pipe();
  if (!ts_fd) return die(ts_fd.error());
  env.timestamp_fd = *ts_fd;

  std::vector<std::unique_ptr<Peer>> peers;
  for (const auto& name : o.peers) {
    if (name == "plume") {
      o.plume.rootfs = env.rootfs;
      auto p = make_plume_peer(o.plume);
      if (!p) return die(p.error());
      peers.push_back(std::move(*p));
    } else {
      peers.push_back(make_local_peer(name, env));
    }
  }

  // crun is an order of magnitude slower: it runs in every stride-th round only.
  const int stride = o.crun_iterations > 0 ? std::max(1, o.iterations / o.crun_iterations) : 0;
  std::vector<PeerSamples> results;
  results.reserve(peers.size());
  for (const auto& p : peers) results.push_back({p->name(), {}});
  const int rounds = o.warmup + o.iterations;
  for (int round = 0; round < rounds; ++round) {
    const bool measured = round >= o.warmup;
    const int m = round - o.warmup;
    // Rotate the starting peer so no peer always follows the same one.
    for (size_t k = 0; k < peers.size(); ++k) {
      size_t i = (k + static_cast<size_t>(round)) % peers.size();
      bool is_crun = peers[i]->name() == "crun";
      if (is_crun && measured &&
          (stride == 0 || m % stride != 0 || static_cast<int>(results[i].samples.size()) >= o.crun_iterations)) {
        continue;
      }
      auto s = peers[i]->start_once();
      if (!s) return die(s.error());
      // The child's clock reading must fall between ours: anything else is a misread timestamp.
      if (s->t1_ns < s->t0_ns || s->t1_ns > s->t2_ns) {
        return die(plain_error(peers[i]->name(), "first-instruction time outside [start, exit]: t0=" +
                                                     std::to_string(s->t0_ns) + " t1=" + std::to_string(s->t1_ns) +
                                                     " t2=" + std::to_string(s->t2_ns)));
      }
      if (measured) results[i].samples.push_back(*s);
    }
    if (measured && (m + 1) % 100 == 0) std::fprintf(stderr, "spawn_bench: %d/%d rounds\n", m + 1, o.iterations);
  }
  peers.clear();  // the Plume peer removes its image from plumed

  std::error_code ec;
  fs::create_directories(o.out, ec);
  if (ec) return die(plain_error("mkdir " + o.out, ec.message()));
  RunInfo info;
  info.command = o.command;
  for (int i = 0; i < argc && o.command.empty(); ++i) info.command += (i ? " " : "") + std::string(argv[i]);
  info.iterations = o.iterations;
  info.crun_iterations = o.crun_iterations;
  info.warmup = o.warmup;
  if (auto ok = write_report(o.out, info, results); !ok) return die(ok.error());
  std::ifstream md(o.out + "/summary.md");
  std::cout << md.rdbuf();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {  // an allocation, say: reported, not a bare abort
    std::fprintf(stderr, "spawn_bench: %s\n", e.what());
    return 1;
  }
}
