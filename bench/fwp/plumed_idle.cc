// fwp_bench density's plumed part: plumed itself at rest with many instances parked, as the
// issue's "plumed CPU while idle (must be ~0: nothing polls)" asks. See fwp_bench.h.
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "fwp_bench.h"
#include "metrics_text.h"
#include "plume/base/unique_fd.h"
#include "unix_http_client.h"

namespace plume::bench {
namespace {

using nlohmann::json;

// The pid of the process listening on `path`, from the kernel (SO_PEERCRED of a connection).
SysResult<pid_t> server_pid(const std::string& path) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return fail(sys_error("socket", path));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) return fail(plain_error(path, "socket path too long"));
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) return fail(sys_error("connect", path));
  ucred cred{};
  socklen_t len = sizeof cred;
  if (::getsockopt(fd.get(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return fail(sys_error("SO_PEERCRED", path));
  return cred.pid;
}

// Context switches of every thread of `pid` (/proc/PID/task/*/status).
uint64_t context_switches(pid_t pid) {
  uint64_t n = 0;
  std::error_code ec;
  for (const auto& task : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/task", ec)) {
    std::ifstream in(task.path() / "status");
    for (std::string line; std::getline(in, line);) {
      if (line.rfind("voluntary_ctxt_switches:", 0) == 0 || line.rfind("nonvoluntary_ctxt_switches:", 0) == 0)
        n += std::strtoull(line.c_str() + line.find(':') + 1, nullptr, 10);
    }
  }
  return n;
}

SysError http_error(const std::string& what, const SysResult<HttpResponse>& r) {
  if (!r) return r.error();
  return plain_error(what, "HTTP " + std::to_string(r->status) + ": " + r->body);
}

void pause_ms(long ms) {
  timespec t{ms / 1000, (ms % 1000) * 1'000'000};
  ::nanosleep(&t, nullptr);
}

}  // namespace

SysResult<PlumedIdle> measure_plumed_idle(const PlumeOptions& plume, const std::string& handler, int tenants,
                                          int per_tenant, int idle_seconds) {
  UnixHttpClient http(plume.socket);
  auto pid = server_pid(plume.socket);
  if (!pid) return fail(pid.error());
  const std::string suffix = std::to_string(::getpid());
  const std::string image = "bench-idle-" + suffix;
  json fwp{{"binary", std::filesystem::absolute(handler).string()}, {"pool_size", per_tenant}};
  auto r = http.request("POST", "/v1/images", plume.admin_token, json{{"name", image}, {"fwp", fwp}}.dump());
  if (!r || r->status != 201) return fail(http_error("POST /v1/images", r));
  std::vector<std::string> names;
  for (int i = 0; i < tenants; ++i) {
    names.push_back("idle" + std::to_string(i) + "-" + suffix);
    // Room for the pool, its template and keeper (the default pids_max is 128).
    const json tenant{{"name", names.back()}, {"token", "bench-idle-token-" + std::to_string(i) + "-" + suffix},
                      {"limits", {{"pids_max", per_tenant + 64}}}};
    r = http.request("POST", "/v1/tenants", plume.admin_token, tenant.dump());
    if (!r || r->status != 201) return fail(http_error("POST /v1/tenants", r));
  }
  PlumedIdle out;
  const int64_t t0 = monotonic_ns();
  // One start per tenant: its template comes up, and its pool fills behind it.
  for (const std::string& name : names) {
    const json run{{"tenant", name}, {"image", image}, {"fwp", true}, {"input", {"x"}}};
    r = http.request("POST", "/v1/workers", plume.admin_token, run.dump());
    if (!r || r->status != 201) return fail(http_error("POST /v1/workers", r));
  }
  const int64_t deadline = t0 + 600'000'000'000;
  for (;;) {
    r = http.request("GET", "/metrics", plume.admin_token);
    if (!r || r->status != 200) return fail(http_error("GET /metrics", r));
    size_t full = 0, parked = 0;
    for (const std::string& name : names) {
      const size_t ready =
          metric_value(r->body, "plume_fwp_pool_ready{tenant=\"" + name + "\",image=\"" + image + "\"}").value_or(0);
      parked += ready;
      full += ready >= static_cast<size_t>(per_tenant) ? 1 : 0;
    }
    if (full == names.size()) {
      out.parked = parked;
      break;
    }
    if (monotonic_ns() > deadline) return fail(plain_error("plumed pools", "not full within 600 s"));
    pause_ms(100);  // each look is work for plumed: not too often
  }
  out.setup_s = static_cast<double>(monotonic_ns() - t0) / 1e9;
  pause_ms(1000);  // the templates give back the spare channels made for the fill
  const uint64_t cpu0 = cpu_ns_of(*pid);
  const uint64_t switches0 = context_switches(*pid);
  const int64_t w0 = monotonic_ns();
  pause_ms(static_cast<long>(idle_seconds) * 1000);
  out.seconds = static_cast<double>(monotonic_ns() - w0) / 1e9;
  out.cpu_ms = static_cast<double>(cpu_ns_of(*pid) - cpu0) / 1e6;
  out.switches = context_switches(*pid) - switches0;
  // Best effort: plumed ends the tenants' instances with the tenants.
  for (const std::string& name : names) (void)http.request("DELETE", "/v1/tenants/" + name + "?force=true", plume.admin_token);
  return out;
}

}  // namespace plume::bench
