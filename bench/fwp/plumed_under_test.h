// A private plumed for the benchmarks that drive its control API (fwp_messages_bench,
// fwp_push_bench): started from a build's binary in a directory of its own, with a cgroup parent,
// an admin token and one tenant, and stopped with everything under that directory removed.
#pragma once

#include <sys/types.h>

#include <string>

#include <nlohmann/json.hpp>

#include "unix_http_client.h"

namespace plume::bench {

struct PlumedUnderTest {
  static constexpr const char* kTenantToken = "bench-tenant-token-0123456789ab";
  static constexpr const char* kAdminToken = "bench-admin-token-0123456789abc";
  std::string dir, socket;
  pid_t pid = -1;
};

// Starts `plumed` in `dir` (created; its log is dir/plumed.log) with PLUME_FUTEX_WAIT set to
// `futex_wait` ("" leaves it unset: io_uring futex waits on channels where the kernel has them;
// "threads": futex_waitv threads; "off": the sweep), and adds the tenant "bench". `tag` names its
// cgroup parent. False with `error` said.
bool start_plumed(const std::string& plumed, const std::string& dir, const std::string& tag,
                  const std::string& futex_wait, PlumedUnderTest& p, std::string& error);

// Adds a featherweight image of `binary` (pool of one) and starts an instance of it with `input`;
// once its log reads `input_reply` (its answer to the input, if it gives one; "" to skip), the
// instance's id. Empty with `error` said.
std::string start_instance(const PlumedUnderTest& p, const std::string& image, const std::string& binary,
                           const std::string& input, const std::string& input_reply, std::string& error);

// SIGTERM, reaped, and its directory removed.
void stop_plumed(PlumedUnderTest& p);

// plumed's CPU time so far (utime + stime from /proc/<pid>/stat), in milliseconds.
double cpu_ms(pid_t pid);

}  // namespace plume::bench
