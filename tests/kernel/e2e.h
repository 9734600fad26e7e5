// Shared steps of the kernel end-to-end tests: skip without root, start plumed, add a tenant, run a
// worker and wait for it through the API.
#pragma once

#include <sys/syscall.h>
#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <fstream>
#include <string>
#include <thread>

#include "support/plumed_fixture.h"

#define PLUME_SKIP_UNLESS_ROOT()                                                           \
  do {                                                                                     \
    if (::geteuid() != 0) GTEST_SKIP() << "needs root: plumed creates cgroups and workers"; \
  } while (0)

namespace plume::test {

using nlohmann::json;

// Status line plus body, for assertion messages.
inline std::string show(const Reply& r) { return std::to_string(r.status) + " " + r.body; }

// Adds a tenant through the API; its token comes back. uid ranges are left to plumed.
inline std::string add_tenant(Plumed& p, const std::string& name, json limits = json::object()) {
  std::string token = name + "-token-" + random_token();
  json spec = {{"name", name}, {"token", token}};
  if (!limits.empty()) spec["limits"] = limits;
  auto r = p.admin("POST", "/v1/tenants", spec.dump());
  EXPECT_EQ(r.status, 201) << show(r);
  return token;
}

// POST /v1/workers with `token`; returns the reply (201 expected by callers that need a worker).
inline Reply start_worker(Plumed& p, const std::string& token, const json& spec) {
  return p.request("POST", "/v1/workers", token, spec.dump());
}

// Starts a worker and returns its JSON (empty object, with a test failure, if it did not start).
inline json run_worker(Plumed& p, const std::string& token, const json& spec) {
  auto r = start_worker(p, token, spec);
  EXPECT_EQ(r.status, 201) << show(r);
  auto j = json_of(r);
  if (r.status != 201 || !j.is_object()) return json::object();
  return j;
}

// GET .../wait with a bounded server-side timeout.
inline json wait_worker(Plumed& p, const std::string& token, const std::string& id, int timeout_ms = 15000) {
  auto r = p.request("GET", "/v1/workers/" + id + "/wait?timeout_ms=" + std::to_string(timeout_ms), token, "",
                     std::chrono::milliseconds(timeout_ms + 10000));
  EXPECT_EQ(r.status, 200) << show(r);
  auto j = json_of(r);
  return j.is_object() ? j : json::object();
}

// The tenant's memory limit as its cgroup holds it (v2 memory.max, v1 memory.limit_in_bytes).
inline std::string tenant_memory_limit(const Plumed& p, const std::string& tenant) {
  for (const std::string& dir : cgroup_parent_dirs(p.cgroup_parent())) {
    for (const char* file : {"/memory.max", "/memory.limit_in_bytes"}) {
      std::ifstream in(dir + "/" + tenant + file);
      std::string value;
      if (in >> value) return value;
    }
  }
  return "(no memory limit file)";
}

// The value of one /metrics sample line ("name{labels} value"), or -1 when absent.
inline long metric(Plumed& plumed, const std::string& series) {
  auto m = plumed.admin("GET", "/metrics");
  const size_t at = m.body.find("\n" + series + " ");
  if (m.status != 200 || at == std::string::npos) return -1;
  return std::stol(m.body.substr(at + series.size() + 2));
}

// Polls /metrics (not a guess at how long a refill takes) until `series` reads `value`, for at
// most 20 s; returns the last value read.
inline long await_metric(Plumed& plumed, const std::string& series, long value) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  long seen = metric(plumed, series);
  while (seen != value && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    seen = metric(plumed, series);
  }
  return seen;
}

// True when process `pid` has ended (or never existed) within `timeout`: the pidfd becomes readable.
inline bool process_gone(pid_t pid, std::chrono::milliseconds timeout) {
  int fd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (fd < 0) return errno == ESRCH;
  pollfd pfd{fd, POLLIN, 0};
  int n = ::poll(&pfd, 1, static_cast<int>(timeout.count()));
  ::close(fd);
  return n == 1;
}

}  // namespace plume::test
