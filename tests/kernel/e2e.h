// Shared steps of the kernel end-to-end tests: skip without root, start plumed, add a tenant, run a
// worker and wait for it through the API.
#pragma once

#include <sys/syscall.h>
#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

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

// The host pid of a running worker (a featherweight instance's is known once its template has
// forked it), looked up at most 100 times, 20 ms apart; 0 if it never came.
inline pid_t running_pid(Plumed& plumed, const std::string& id, const std::string& token) {
  pid_t pid = 0;
  for (int i = 0; i < 100 && pid <= 0; ++i) {
    auto cur = json_of(plumed.request("GET", "/v1/workers/" + id, token));
    pid = cur.value("pid", 0);
    if (pid <= 0) ::poll(nullptr, 0, 20);
  }
  return pid;
}

// The processes in a tenant's template group (the template, what it parks, and its instances that
// have no group of their own), from the first hierarchy that has the group; empty where none has.
inline std::vector<pid_t> template_group(const Plumed& plumed, const std::string& tenant, const std::string& image) {
  for (const std::string& dir : cgroup_parent_dirs(plumed.cgroup_parent())) {
    std::ifstream in(dir + "/" + tenant + "/tpl-" + image + "/cgroup.procs");
    if (!in) continue;
    std::vector<pid_t> pids;
    for (pid_t pid = 0; in >> pid;) pids.push_back(pid);
    return pids;
  }
  return {};
}

inline bool template_group_exists(const Plumed& plumed, const std::string& tenant, const std::string& image) {
  for (const std::string& dir : cgroup_parent_dirs(plumed.cgroup_parent()))
    if (std::filesystem::exists(dir + "/" + tenant + "/tpl-" + image)) return true;
  return false;
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
