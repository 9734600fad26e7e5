// The Plume peer: exec-mode workers started through plumed's control API, exactly as a tenant
// would: POST /v1/workers (t0 before it), GET /v1/workers/{id}/wait (t2 when it answers), then the
// worker's stdout log gives t1. The log read and the record's DELETE happen after t2, untimed.
#include <time.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "peers.h"
#include "unix_http_client.h"

namespace plume::bench {
namespace {

using nlohmann::json;

SysResult<json> parse_body(const HttpResponse& resp, const std::string& what) {
  json j = json::parse(resp.body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return fail(plain_error(what, "response is not JSON: " + resp.body));
  return j;
}

SysError http_error(const std::string& what, const HttpResponse& resp) {
  return plain_error(what, "HTTP " + std::to_string(resp.status) + ": " + resp.body);
}

class PlumePeer final : public Peer {
 public:
  PlumePeer(PlumeOptions options, std::string image)
      : opt_(std::move(options)), image_(std::move(image)), http_(opt_.socket) {}

  ~PlumePeer() override {
    // Best effort: the image is plumed's; a stopped plumed forgets it anyway.
    (void)http_.request("DELETE", "/v1/images/" + image_, opt_.admin_token);
  }

  const std::string& name() const override { return name_; }

  SysResult<void> register_image() {
    json spec = {{"name", image_}, {"rootfs", opt_.rootfs}};
    auto resp = http_.request("POST", "/v1/images", opt_.admin_token, spec.dump());
    if (!resp) return fail(resp.error());
    if (resp->status != 201) return fail(http_error("POST /v1/images", *resp));
    return {};
  }

  SysResult<Sample> start_once() override {
    const std::string run_body =
        json{{"tenant", opt_.tenant}, {"image", image_}, {"argv", {"/first_instruction"}}}.dump();
    Sample s;
    s.t0_ns = monotonic_ns();
    auto created = http_.request("POST", "/v1/workers", opt_.admin_token, run_body);
    if (!created) return fail(created.error());
    if (created->status != 201) return fail(http_error("POST /v1/workers", *created));
    auto worker = parse_body(*created, "POST /v1/workers");
    if (!worker) return fail(worker.error());
    const std::string id = worker->value("id", "");
    const std::string base = "/v1/workers/" + id;

    auto waited = http_.request("GET", base + "/wait?timeout_ms=10000", opt_.admin_token);
    s.t2_ns = monotonic_ns();
    if (!waited) return fail(waited.error());
    if (waited->status != 200) return fail(http_error("GET " + base + "/wait", *waited));
    auto ended = parse_body(*waited, "GET " + base + "/wait");
    if (!ended) return fail(ended.error());
    const json exit = ended->value("exit", json::object());
    if (ended->value("state", "") != "exited" || exit.value("cause", "") != "exit" ||
        exit.value("code", -1) != 0) {
      return fail(plain_error("plume worker " + id, "did not exit 0: " + waited->body));
    }

    auto log = http_.request("GET", base + "/logs?stream=stdout", opt_.admin_token);
    if (!log) return fail(log.error());
    if (log->status != 200) return fail(http_error("GET " + base + "/logs", *log));
    char* end = nullptr;
    s.t1_ns = static_cast<int64_t>(std::strtoull(log->body.c_str(), &end, 10));
    if (end == log->body.c_str()) {
      return fail(plain_error("plume worker " + id, "no timestamp in stdout log: '" + log->body + "'"));
    }

    auto removed = http_.request("DELETE", base, opt_.admin_token);
    if (!removed) return fail(removed.error());
    if (removed->status != 204) return fail(http_error("DELETE " + base, *removed));
    return s;
  }

 private:
  std::string name_ = "plume";
  PlumeOptions opt_;
  std::string image_;
  UnixHttpClient http_;
};

// plumed answers /v1/health once its socket listens; poll with a bounded deadline.
SysResult<void> wait_ready(const PlumeOptions& opt) {
  const int64_t deadline = monotonic_ns() + int64_t{opt.ready_timeout_ms} * 1'000'000;
  SysError last = plain_error("GET /v1/health", "no attempt made");
  for (;;) {
    UnixHttpClient probe(opt.socket);
    auto resp = probe.request("GET", "/v1/health", {});
    if (resp && resp->status == 200) return {};
    last = resp ? http_error("GET /v1/health", *resp) : resp.error();
    if (monotonic_ns() > deadline) return fail(last);
    timespec pause{0, 20'000'000};
    ::nanosleep(&pause, nullptr);
  }
}

}  // namespace

SysResult<std::unique_ptr<Peer>> make_plume_peer(const PlumeOptions& options) {
  auto ready = wait_ready(options);
  if (!ready) return fail(ready.error());
  auto peer = std::make_unique<PlumePeer>(options, "bench-spawn-" + std::to_string(::getpid()));
  auto reg = peer->register_image();
  if (!reg) return fail(reg.error());
  return std::unique_ptr<Peer>(std::move(peer));
}

}  // namespace plume::bench
