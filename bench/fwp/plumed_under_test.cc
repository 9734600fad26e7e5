#include "plumed_under_test.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <thread>

namespace plume::bench {

using nlohmann::json;

namespace {

std::string read_all(const std::string& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// One request that must be answered `want`; its body parsed into `out` when given.
bool must(UnixHttpClient& client, const char* method, const std::string& target, const std::string& token,
          const json& body, int want, json* out, std::string& error) {
  auto r = client.request(method, target, token, body.dump());
  if (!r.ok() || r->status != want) {
    error = std::string(method) + " " + target + ": " +
            (r.ok() ? std::to_string(r->status) + " " + r->body : r.error().message());
    return false;
  }
  if (out) *out = json::parse(r->body, nullptr, false);
  return true;
}

}  // namespace

bool start_plumed(const std::string& plumed, const std::string& dir, const std::string& tag,
                  const std::string& futex_wait, PlumedUnderTest& p, std::string& error) {
  p.dir = dir;
  p.socket = dir + "/plumed.sock";
  std::filesystem::create_directories(dir);
  const std::string parent = "plume-" + tag + "-" + std::to_string(::getpid()) + "-" +
                             std::filesystem::path(dir).filename().string();
  p.pid = ::fork();
  if (p.pid < 0) return error = "fork: " + std::string(std::strerror(errno)), false;
  if (p.pid == 0) {
    if (!futex_wait.empty()) ::setenv("PLUME_FUTEX_WAIT", futex_wait.c_str(), 1);
    const std::string log = dir + "/plumed.log";
    if (std::FILE* f = std::freopen(log.c_str(), "w", stderr); f == nullptr) ::_exit(126);
    ::execl(plumed.c_str(), plumed.c_str(), "--runtime-dir", dir.c_str(), "--cgroup-parent", parent.c_str(),
            "--admin-token", PlumedUnderTest::kAdminToken, "--log-level", "warn", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  UnixHttpClient client(p.socket);
  bool up = false;
  for (int i = 0; i < 500 && !up; ++i) {
    auto r = client.request("GET", "/v1/health", PlumedUnderTest::kAdminToken);
    up = r.ok() && r->status == 200;
    if (!up) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (!up) return error = "plumed did not answer on " + p.socket + "; its log:\n" + read_all(dir + "/plumed.log"), false;
  return must(client, "POST", "/v1/tenants", PlumedUnderTest::kAdminToken,
              {{"name", "bench"}, {"token", PlumedUnderTest::kTenantToken}}, 201, nullptr, error);
}

std::string start_instance(const PlumedUnderTest& p, const std::string& image, const std::string& binary,
                           const std::string& input, const std::string& input_reply, std::string& error) {
  UnixHttpClient client(p.socket);
  json w;
  if (!must(client, "POST", "/v1/images", PlumedUnderTest::kAdminToken,
            {{"name", image}, {"fwp", {{"binary", binary}, {"pool_size", 1}}}}, 201, nullptr, error) ||
      !must(client, "POST", "/v1/workers", PlumedUnderTest::kTenantToken,
            {{"fwp", true}, {"image", image}, {"input", input}}, 201, &w, error))
    return "";
  std::string id = w.value("id", std::string());
  if (input_reply.empty()) return id;
  // Its reply to the start message first: the channel is one ordered stream.
  for (int i = 0; i < 500; ++i) {
    auto r = client.request("GET", "/v1/workers/" + id + "/logs", PlumedUnderTest::kTenantToken);
    if (r.ok() && r->body == input_reply + "\n") return id;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  error = "the instance never answered its start message";
  return "";
}

void stop_plumed(PlumedUnderTest& p) {
  if (p.pid <= 0) return;
  ::kill(p.pid, SIGTERM);
  int status = 0;
  ::waitpid(p.pid, &status, 0);
  p.pid = -1;
  std::error_code ec;
  std::filesystem::remove_all(p.dir, ec);
}

double cpu_ms(pid_t pid) {
  const std::string stat = read_all("/proc/" + std::to_string(pid) + "/stat");
  const size_t paren = stat.rfind(')');
  if (paren == std::string::npos) return 0;
  std::istringstream fields(stat.substr(paren + 2));
  std::string field;
  double ticks = 0;
  for (int i = 3; fields >> field && i <= 15; ++i)
    if (i == 14 || i == 15) ticks += std::strtod(field.c_str(), nullptr);
  return ticks * 1000.0 / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

}  // namespace plume::bench
