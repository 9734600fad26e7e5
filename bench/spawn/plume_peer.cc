// The Plume peers: workers started through plumed's control API, exactly as a tenant would:
// POST /v1/workers (t0 before it), GET /v1/workers/{id}/wait (t2 when it answers), then the
// worker's stdout log gives t1. The log read and the record's DELETE happen after t2, untimed.
// PlumePeer starts exec-mode workers of first_instruction; PlumeFwpPeer featherweight instances
// of bench/fwp's first_handler, whose reply (in the stdout log) starts with its handler's clock.
#include <time.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "metrics_text.h"
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

// Registers an image (admin): 201 or the error.
SysResult<void> post_image(UnixHttpClient& http, const std::string& token, const json& spec) {
  auto resp = http.request("POST", "/v1/images", token, spec.dump());
  if (!resp) return fail(resp.error());
  if (resp->status != 201) return fail(http_error("POST /v1/images", *resp));
  return {};
}

// POST /v1/workers with `body`, then wait, check it exited 0, read its stdout log; t0 and t2 into
// `s`. Returns the log and the creation response.
struct Ran {
  std::string log;
  json created;
};
SysResult<Ran> run_and_wait(UnixHttpClient& http, const std::string& token, const std::string& body, Sample& s) {
  s.t0_ns = monotonic_ns();
  auto created = http.request("POST", "/v1/workers", token, body);
  if (!created) return fail(created.error());
  if (created->status != 201) return fail(http_error("POST /v1/workers", *created));
  auto worker = parse_body(*created, "POST /v1/workers");
  if (!worker) return fail(worker.error());
  const std::string id = worker->value("id", "");
  const std::string base = "/v1/workers/" + id;

  auto waited = http.request("GET", base + "/wait?timeout_ms=10000", token);
  s.t2_ns = monotonic_ns();
  if (!waited) return fail(waited.error());
  if (waited->status != 200) return fail(http_error("GET " + base + "/wait", *waited));
  auto ended = parse_body(*waited, "GET " + base + "/wait");
  if (!ended) return fail(ended.error());
  const json exit = ended->value("exit", json::object());
  if (ended->value("state", "") != "exited" || exit.value("cause", "") != "exit" || exit.value("code", -1) != 0) {
    return fail(plain_error("plume worker " + id, "did not exit 0: " + waited->body));
  }
  auto log = http.request("GET", base + "/logs?stream=stdout", token);
  if (!log) return fail(log.error());
  if (log->status != 200) return fail(http_error("GET " + base + "/logs", *log));
  auto removed = http.request("DELETE", base, token);
  if (!removed) return fail(removed.error());
  if (removed->status != 204) return fail(http_error("DELETE " + base, *removed));
  return Ran{log->body, std::move(*worker)};
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
    return post_image(http_, opt_.admin_token, {{"name", image_}, {"rootfs", opt_.rootfs}});
  }

  SysResult<Sample> start_once() override {
    const std::string run_body =
        json{{"tenant", opt_.tenant}, {"image", image_}, {"argv", {"/first_instruction"}}}.dump();
    Sample s;
    auto ran = run_and_wait(http_, opt_.admin_token, run_body, s);
    if (!ran) return fail(ran.error());
    char* end = nullptr;
    s.t1_ns = static_cast<int64_t>(std::strtoull(ran->log.c_str(), &end, 10));
    if (end == ran->log.c_str()) {
      return fail(plain_error("plume worker", "no timestamp in stdout log: '" + ran->log + "'"));
    }
    return s;
  }

 private:
  std::string name_ = "plume";
  PlumeOptions opt_;
  std::string image_;
  UnixHttpClient http_;
};

class PlumeFwpPeer final : public Peer {
 public:
  PlumeFwpPeer(PlumeOptions options, std::string name, std::string image, size_t pool_size, size_t* pool_hits)
      : name_(std::move(name)), opt_(std::move(options)), image_(std::move(image)), http_(opt_.socket),
        pool_size_(pool_size), pool_hits_(pool_hits) {}
  ~PlumeFwpPeer() override { (void)http_.request("DELETE", "/v1/images/" + image_, opt_.admin_token); }
  const std::string& name() const override { return name_; }

  SysResult<void> register_image(const std::string& handler, size_t pool_size, size_t spinning_standbys) {
    // plumed takes host paths only as absolute ones.
    const std::string binary = std::filesystem::absolute(handler).string();
    json fwp{{"binary", binary}, {"pool_size", pool_size}};
    if (spinning_standbys > 0) fwp["spinning_standbys"] = spinning_standbys;
    return post_image(http_, opt_.admin_token, {{"name", image_}, {"fwp", fwp}});
  }

  SysResult<Sample> start_once() override {
    const std::string run_body =
        json{{"tenant", opt_.tenant}, {"image", image_}, {"fwp", true}, {"input", {"x"}}}.dump();
    Sample s;
    auto ran = run_and_wait(http_, opt_.admin_token, run_body, s);
    if (!ran) return fail(ran.error());
    // The handler's reply, one line of the log: [its clock, 8 bytes]["x"]
    if (ran->log.size() != sizeof(uint64_t) + 2 || ran->log.compare(sizeof(uint64_t), 2, "x\n") != 0) {
      return fail(plain_error("plume fwp instance",
                              "stdout log is not [clock][x]: " + std::to_string(ran->log.size()) + " bytes"));
    }
    uint64_t t1 = 0;
    std::memcpy(&t1, ran->log.data(), sizeof t1);
    s.t1_ns = static_cast<int64_t>(t1);
    if (ran->created.value("start_path", "") == "pool" && pool_hits_ != nullptr) ++*pool_hits_;
    wait_pool_full();
    return s;
  }

 private:
  // Untimed, after each start: plumed's pool of this image is full again (its /metrics), so that
  // the refill does not share the CPUs with the next peer's start. Gives up after 2 s, or at
  // once if the metric cannot be read.
  void wait_pool_full() {
    const std::string series = "plume_fwp_pool_ready{tenant=\"" + opt_.tenant + "\",image=\"" + image_ + "\"}";
    const int64_t deadline = monotonic_ns() + 2'000'000'000;
    while (monotonic_ns() < deadline) {
      auto resp = http_.request("GET", "/metrics", opt_.admin_token);
      if (!resp || resp->status != 200) return;
      const auto ready = metric_value(resp->body, series);
      if (!ready || *ready >= pool_size_) return;
      timespec pause{0, 200'000};
      ::nanosleep(&pause, nullptr);
    }
  }

  std::string name_;
  PlumeOptions opt_;
  std::string image_;
  UnixHttpClient http_;
  size_t pool_size_;
  size_t* pool_hits_;
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

SysResult<std::unique_ptr<Peer>> make_plume_fwp_peer(const PlumeOptions& options, const std::string& handler,
                                                     size_t pool_size, size_t* pool_hits,
                                                     size_t spinning_standbys) {
  auto ready = wait_ready(options);
  if (!ready) return fail(ready.error());
  const bool spin = spinning_standbys > 0;
  auto peer = std::make_unique<PlumeFwpPeer>(options, spin ? "plume_fwp_spin" : "plume_fwp",
                                             std::string(spin ? "bench-fwpspin-" : "bench-fwp-") +
                                                 std::to_string(::getpid()),
                                             pool_size, pool_hits);
  auto reg = peer->register_image(handler, pool_size, spinning_standbys);
  if (!reg) return fail(reg.error());
  return std::unique_ptr<Peer>(std::move(peer));
}

}  // namespace plume::bench
