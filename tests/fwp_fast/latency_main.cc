// fwp_fast_latency: quick medians of start latencies, to the handler's first instruction:
//   warm pool (doorbell), template fork, and, from a process as small as the template, a bare
//   fork and fork+exec of a tiny static binary. Needs root. Not a test: it asserts nothing.
//   ./fwp_fast_latency [--gtest_filter=...]   (env FWP_LAT_N: samples per path, default 200)
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "fwp_fast/fast_fixture.h"

namespace plume::fwp::test {
namespace {

uint64_t now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000u + static_cast<uint64_t>(ts.tv_nsec);
}

uint64_t median(std::vector<uint64_t> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

uint64_t pctl(std::vector<uint64_t> v, double p) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[static_cast<size_t>(static_cast<double>(v.size() - 1) * p)];
}

int samples() {
  const char* n = std::getenv("FWP_LAT_N");
  return n != nullptr ? std::atoi(n) : 200;
}

// One start, measured from just before start_instance to the handler's first instruction.
class Latency : public FastTest {
 protected:
  std::vector<uint64_t> run(Template& t, bool from_pool) {
    std::vector<uint64_t> out;
    for (int i = 0; i < samples(); ++i) {
      if (from_pool && !run_until([&] { return t.pool_ready() == t.spec().pool_size; })) break;
      if (!from_pool && t.spec().max_refills_in_flight == 0) run_until([] { return false; }, 2ms);
      const uint64_t t0 = now_ns();
      Instance& inst = start_instance("t0");
      (from_pool ? call_ : fork_call_).push_back(now_ns() - t0);
      const std::string r = reply(inst);
      char* rest = nullptr;
      const uint64_t entered = std::strtoull(r.c_str(), &rest, 10);
      const uint64_t forked_at = std::strtoull(rest, nullptr, 10);
      if (!from_pool && forked_at != 0 && entered > forked_at) in_template_.push_back(entered - forked_at);
      const bool pooled = inst.path() == StartPath::pool;
      if (pooled == (from_pool || t.spec().max_refills_in_flight == 0) && entered > t0) out.push_back(entered - t0);
      if (pooled && entered > inst.rung_at_ns()) bell_.push_back(entered - inst.rung_at_ns());
      (void)inst.send({});
      const uint64_t id = inst.id();
      run_until([&] { return inst.exit().has_value(); });
      t.forget(id);
    }
    return out;
  }
  std::vector<uint64_t> call_;
  std::vector<uint64_t> fork_call_;    // fork path: how long start_instance itself took
  std::vector<uint64_t> in_template_;  // fork path: template's fork() -> handler
  std::vector<uint64_t> bell_;  // pool path: from the channel send itself to the handler  // pool path: how long start_instance itself took
};

uint64_t from_probe(const std::string& args) {
  const std::string cmd = probe_path() + " " + args;
  FILE* f = ::popen(cmd.c_str(), "r");
  if (f == nullptr) return 0;
  char buf[64] = {};
  (void)!std::fgets(buf, sizeof buf, f);
  ::pclose(f);
  return std::strtoull(buf, nullptr, 10);
}

std::string smaps_rollup(pid_t pid) {
  FILE* f = std::fopen(("/proc/" + std::to_string(pid) + "/smaps_rollup").c_str(), "r");
  std::string out;
  if (f == nullptr) return out;
  char line[256];
  while (std::fgets(line, sizeof line, f) != nullptr) {
    if (std::strncmp(line, "Rss:", 4) == 0 || std::strncmp(line, "Pss:", 4) == 0) out += line;
  }
  std::fclose(f);
  return out;
}

std::string maps_count(pid_t pid) {
  FILE* f = std::fopen(("/proc/" + std::to_string(pid) + "/maps").c_str(), "r");
  if (f == nullptr) return "?";
  int n = 0;
  char line[512];
  while (std::fgets(line, sizeof line, f) != nullptr) ++n;
  std::fclose(f);
  return std::to_string(n);
}

TEST_F(Latency, StartPaths) {
  const int n = samples();
  TemplateSpec pooled = make_spec(probe_path());
  pooled.pool_size = 8;
  // FWP_LAT_NO_REFILL=1: a pool of N, never refilled while measuring (no fork competes with the
  // started instances: shows what refills cost the data path on a small machine).
  const bool no_refill = std::getenv("FWP_LAT_NO_REFILL") != nullptr;
  if (no_refill) pooled.pool_size = static_cast<size_t>(n);
  Template& t = start(std::move(pooled));
  if (no_refill) {
    run_until([&] { return t.pool_ready() == t.spec().pool_size; }, 60s);
    const_cast<TemplateSpec&>(t.spec()).max_refills_in_flight = 0;
  }
  const auto warm = run(t, !no_refill);
  const auto bell_free = bell_;
  const auto call_free = call_;
  std::printf("template pid %d smaps_rollup:\n%s", t.template_pid(), smaps_rollup(t.template_pid()).c_str());
  std::printf("template mappings: %s\n", maps_count(t.template_pid()).c_str());
  tmpl_.reset();
  TemplateSpec traced = make_spec(probe_path());
  if (std::getenv("FWP_TRACE") != nullptr) traced.sandbox.env.push_back("PLUME_FWP_TRACE=1");
  Template& f = start(std::move(traced));
  const auto forked = run(f, false);
  const auto fork_in_template = in_template_;
  const auto fork_call = fork_call_;
  TemplateSpec own = make_spec(probe_path());
  own.cgroup_mode = InstanceCgroups::own;
  tmpl_.reset();
  Template& o = start(std::move(own));
  const auto forked_own = run(o, false);
  const uint64_t bare = from_probe("bare-fork " + std::to_string(n));
  const char* fi = std::getenv("FWP_FIRST_INSTRUCTION");
  const uint64_t exec = from_probe("fork-exec " + std::to_string(n) + " " +
                                   (fi != nullptr ? fi : PLUME_FIRST_INSTRUCTION_PATH));
  const uint64_t wake = from_probe("wake " + std::to_string(n));
  std::printf("samples per path: %d\n", n);
  std::printf("futex wake of a sleeping process: p50 %8.1f us (the floor of a doorbell)\n",
              static_cast<double>(wake) / 1e3);
  std::printf("warm pool  (doorbell -> handler): p50 %8.1f us  p90 %8.1f us  (n=%zu)\n",
              static_cast<double>(median(warm)) / 1e3, static_cast<double>(pctl(warm, 0.9)) / 1e3, warm.size());
  std::printf("  start_instance() call returns : p50 %8.1f us\n", static_cast<double>(median(call_free)) / 1e3);
  std::printf("  channel send -> handler       : p50 %8.1f us\n", static_cast<double>(median(bell_free)) / 1e3);
  std::printf("template fork (shared cgroup)  : p50 %8.1f us  p90 %8.1f us  (n=%zu)\n",
              static_cast<double>(median(forked)) / 1e3, static_cast<double>(pctl(forked, 0.9)) / 1e3, forked.size());
  std::printf("  start_instance() call returns : p50 %8.1f us\n", static_cast<double>(median(fork_call)) / 1e3);
  std::printf("  template fork() -> handler    : p50 %8.1f us\n", static_cast<double>(median(fork_in_template)) / 1e3);
  std::printf("template fork (own cgroup)     : p50 %8.1f us  p90 %8.1f us  (n=%zu)\n",
              static_cast<double>(median(forked_own)) / 1e3, static_cast<double>(pctl(forked_own, 0.9)) / 1e3,
              forked_own.size());
  std::printf("bare fork, same binary         : p50 %8.1f us\n", static_cast<double>(bare) / 1e3);
  std::printf("fork+exec first_instruction    : p50 %8.1f us\n", static_cast<double>(exec) / 1e3);
  if (median(warm) > 0)
    std::printf("fork+exec / warm pool          : %.0fx\n",
                static_cast<double>(exec) / static_cast<double>(median(warm)));
  if (bare > 0) {
    std::printf("template fork / bare fork      : %.2fx end to end, %.2fx from the template's fork()\n",
                static_cast<double>(median(forked)) / static_cast<double>(bare),
                static_cast<double>(median(fork_in_template)) / static_cast<double>(bare));
  }
}

}  // namespace
}  // namespace plume::fwp::test
