#include "api.h"

#include <algorithm>
#include <chrono>
#include <functional>
#include <string_view>
#include <vector>

#include "json_response.h"
#include "plume/base/log.h"
#include "supervisor.h"

namespace plume::kernel {
namespace {

HttpResponse err(int status, std::string_view code, std::string_view msg) { return HttpResponse::error(status, code, msg); }

std::vector<std::string> split_path(const std::string& path) {
  std::vector<std::string> parts;
  size_t i = 0;
  while (i < path.size()) {
    while (i < path.size() && path[i] == '/') ++i;
    size_t j = path.find('/', i);
    if (j == std::string::npos) j = path.size();
    if (j > i) parts.push_back(path.substr(i, j - i));
    i = j;
  }
  return parts;
}

// Counts every response by status for /metrics, whichever path sends it.
class CountingResponder : public Responder {
 public:
  CountingResponder(std::shared_ptr<Responder> inner, HttpCounters& counters, std::string method, std::string path)
      : inner_(std::move(inner)), counters_(counters), method_(std::move(method)), path_(std::move(path)) {}
  void send(HttpResponse r) override {
    counters_.by_status[r.status]++;
    log::debug("api.response", {{"method", method_}, {"path", path_}, {"status", r.status}});
    inner_->send(std::move(r));
  }
  bool connected() const override { return inner_->connected(); }

 private:
  std::shared_ptr<Responder> inner_;
  HttpCounters& counters_;
  std::string method_, path_;
};

// Runs `then` before passing on a 2xx response: a tenant's removal answers only once it is done.
class OnSuccess : public Responder {
 public:
  OnSuccess(std::shared_ptr<Responder> inner, std::function<void()> then)
      : inner_(std::move(inner)), then_(std::move(then)) {}
  void send(HttpResponse r) override {
    if (r.status >= 200 && r.status < 300 && then_) then_();
    inner_->send(std::move(r));
  }
  bool connected() const override { return inner_->connected(); }

 private:
  std::shared_ptr<Responder> inner_;
  std::function<void()> then_;
};

// A removal that the state file could not take: the thing is gone now but comes back at the next
// start, and the log says from where.
void log_not_forgotten(const std::string& what, const std::string& error, const ApiState& state) {
  log::error("api_state.save", {{"removed", what}, {"error", error},
                                {"then", "it comes back when plumed restarts, unless removed from " + state.path()}});
}

// Parses a JSON body; an empty body is an empty object.
bool parse_body(const HttpRequest& req, json& out, std::string& error) {
  if (req.body.empty()) {
    out = json::object();
    return true;
  }
  out = json::parse(req.body, nullptr, /*allow_exceptions=*/false);
  if (out.is_discarded()) {
    error = "body is not valid JSON";
    return false;
  }
  return true;
}

// A query parameter holding a count (decimal digits, at most 12): false when it holds anything
// else; `out` is left alone when it is absent.
bool query_count(const HttpRequest& req, const char* name, uint64_t& out) {
  auto it = req.query.find(name);
  if (it == req.query.end()) return true;
  const std::string& v = it->second;
  if (v.empty() || v.size() > 12 || v.find_first_not_of("0123456789") != std::string::npos) return false;
  out = std::stoull(v);
  return true;
}

// A tenant or image the configuration names is changed through it: the API changing it would
// be undone at the next reload or start (a rotated token coming back, say).
HttpResponse owned_by_config(const std::string& what) {
  return HttpResponse::error(409, "conflict",
                             what + " is named in plumed's configuration: change it there and reload (SIGHUP); "
                                    "once the file no longer names it, the API can remove it");
}

// origin: "built-in" (host), "config" (the configuration names it) or "api".
json image_json(const Image& i, const Supervisor& sup) {
  const char* origin = i.spec.name == "host" ? "built-in" : sup.config_names_image(i.spec.name) ? "config" : "api";
  json j = {{"name", i.spec.name}, {"origin", origin}, {"source", i.source}, {"rootfs", i.rootfs_path},
            {"seccomp", i.spec.seccomp_profile.empty() ? "default" : i.spec.seccomp_profile},
            {"io_uring", i.spec.io_uring}};
  if (i.spec.fwp.enabled)
    j["fwp"] = {{"binary", i.spec.fwp.binary}, {"pool_size", i.spec.fwp.pool_size},
                {"spinning_standbys", i.spec.fwp.spinning_standbys},
                {"io_uring_ops", i.spec.fwp.io_uring_ops}, {"instance_cgroups", i.spec.fwp.instance_cgroups},
                {"huge_text", i.spec.fwp.huge_text}, {"channel_slots", i.spec.fwp.channel_slots},
                // What the channel really carries: the configured size rounded up to its slot.
                {"max_message", i.spec.fwp.channel_slot_bytes() - 8}};
  return j;
}

bool query_flag(const HttpRequest& req, const char* key) {
  auto it = req.query.find(key);
  return it != req.query.end() && (it->second == "true" || it->second == "1");
}

}  // namespace

// PATCH /v1/tenants/<name>: a new token, limits, or both, for a running tenant; its workers keep
// running and are held to the new limits at once. What is not in the body stays as it is.
HttpResponse Api::update_tenant(Tenant& t, const json& body) {
  if (sup_.config_names_tenant(t.spec.name)) return owned_by_config("tenant " + t.spec.name);
  if (!body.is_object()) return err(400, "bad_request", "expected a JSON object with token and/or limits");
  for (auto it = body.begin(); it != body.end(); ++it) {
    const std::string& key = it.key();
    if (key == "token" || key == "limits") continue;
    if (key == "name" || key == "uid_base" || key == "uid_count")
      return err(400, "bad_request", key + ": cannot change on a tenant; remove it and add it again");
    return err(400, "bad_request", "tenant " + t.spec.name + ": unknown field \"" + key + "\"");
  }
  // The checks of an addition: the tenant as it is, the new token over it.
  json wanted = tenant_to_json(t.spec);
  wanted.erase("limits");
  if (body.contains("token")) wanted["token"] = body["token"];
  auto spec = tenant_from_json(wanted);
  if (!spec.ok()) return err(400, "bad_request", spec.error().message);
  TenantLimits limits = t.spec.limits;
  if (body.contains("limits")) {
    auto merged = limits_from_json(body["limits"], t.spec.limits, "tenant " + t.spec.name + ".limits");
    if (!merged.ok()) return err(400, "bad_request", merged.error().message);
    limits = merged.value();
  }
  if (Supervisor::lifts_a_limit(limits))  // refused by update_tenant too; here it is the caller's 400
    return err(400, "bad_request", "tenant " + t.spec.name + ": a limit of 0 cannot be set on a running tenant");
  const TenantSpec before = t.spec;
  if (auto updated = sup_.update_tenant(t, spec->token, limits); !updated.ok())
    return err(409, "conflict", updated.error().message);
  // A tenant the API added is kept as it now is; one the config file names keeps the file's
  // values from its next reload or start on.
  if (state_.tenants().count(t.spec.name) != 0) {
    if (std::string not_saved = state_.record_tenant(t.spec); !not_saved.empty()) {
      // Put back as it was, so that what runs is what the next start brings back.
      auto back = sup_.update_tenant(t, before.token, before.limits);
      const std::string outcome = back.ok() ? "was not changed" : "was changed but is not kept (" + back.error().message + ")";
      log::error("api_state.save", {{"tenant", t.spec.name}, {"error", not_saved}, {"then", outcome}});
      return err(500, "state_not_saved", "tenant " + t.spec.name + " " + outcome + ": " + not_saved);
    }
  }
  return json_response(200, sup_.tenant_json(t));
}

// PATCH /v1/images/<name>: a featherweight image's warm pool, resized in every template of it at
// once. The rest of an image is what its templates were made from: PUT replaces it (below).
HttpResponse Api::update_image(const std::string& name, const json& body) {
  Image* image = sup_.images().find(name);
  if (image == nullptr) return err(404, "not_found", "no image " + name);
  if (sup_.config_names_image(name)) return owned_by_config("image " + name);
  if (!body.is_object()) return err(400, "bad_request", "expected a JSON object: {\"fwp\": {\"pool_size\": N}}");
  for (auto it = body.begin(); it != body.end(); ++it)
    if (it.key() != "fwp")
      return err(400, "bad_request", it.key() + ": cannot change on a running image; replace it (PUT)");
  if (!image->spec.fwp.enabled) return err(400, "bad_request", "image " + name + " has no fwp app: it has no pool");
  const json& fwp = body.contains("fwp") ? body["fwp"] : json::object();
  if (!fwp.is_object()) return err(400, "bad_request", "fwp: expected an object");
  for (auto it = fwp.begin(); it != fwp.end(); ++it)
    if (it.key() != "pool_size")
      return err(400, "bad_request", "fwp." + it.key() + ": cannot change on a running image; replace it (PUT)");
  // The checks of an addition (at most 1024; spinning_standbys at most the pool), over the image.
  json wanted = image_to_json(image->spec);
  if (fwp.contains("pool_size")) wanted["fwp"]["pool_size"] = fwp["pool_size"];
  auto spec = image_from_json(wanted);
  if (!spec.ok()) return err(400, "bad_request", spec.error().message);
  const uint32_t before = image->spec.fwp.pool_size;
  sup_.set_pool_size(*image, spec->fwp.pool_size);
  if (state_.images().count(name) != 0) {
    if (std::string not_saved = state_.record_image(image->spec); !not_saved.empty()) {
      sup_.set_pool_size(*image, before);
      log::error("api_state.save", {{"image", name}, {"error", not_saved}, {"then", "was not changed"}});
      return err(500, "state_not_saved", "image " + name + " was not changed: " + not_saved);
    }
  }
  return json_response(200, image_json(*image, sup_));
}

// PUT /v1/images/<name>: a whole new description of an image, or the same one again to pick up a
// new build of its app. It is checked and compiled first, so one that fails leaves the image as
// it was; then the image's templates go with their pools, and the next start makes new ones.
// Refused while an instance of it runs, unless `force` stops them.
HttpResponse Api::replace_image(const std::string& name, json body, bool force) {
  if (sup_.images().find(name) == nullptr) return err(404, "not_found", "no image " + name);
  if (name == "host") return err(409, "conflict", "the built-in image host cannot be replaced");
  if (sup_.config_names_image(name)) return owned_by_config("image " + name);
  if (!body.is_object()) return err(400, "bad_request", "expected a JSON object: the image as POST /v1/images takes it");
  if (!body.contains("name")) body["name"] = name;
  auto spec = image_from_json(body);
  if (!spec.ok()) return err(400, "bad_request", spec.error().message);
  if (spec->name != name) return err(400, "bad_request", "name: " + spec->name + " is not the image in the path, " + name);
  // Before anything is compiled or written (Supervisor::replace_image checks again, for reloads).
  if (auto stopping = sup_.instances_to_stop(name, force); !stopping.ok())
    return err(409, "conflict", stopping.error().message);
  auto prepared = ImageRegistry::prepare(spec.value());
  if (!prepared.ok()) return err(400, "bad_request", prepared.error().message);
  // Kept before it takes effect: a replacement the next start would undo must not happen.
  if (state_.images().count(name) != 0) {
    if (std::string not_saved = state_.record_image(spec.value()); !not_saved.empty()) {
      log::error("api_state.save", {{"image", name}, {"error", not_saved}, {"then", "was not replaced"}});
      return err(500, "state_not_saved", "image " + name + " was not replaced: " + not_saved);
    }
  }
  auto replaced = sup_.replace_image(std::move(prepared.value()), force);
  if (!replaced.ok()) return err(409, "conflict", replaced.error().message);
  return json_response(200, image_json(*replaced.value(), sup_));
}

void Api::handle(HttpRequest req, std::shared_ptr<Responder> raw) {
  auto responder = std::make_shared<CountingResponder>(std::move(raw), counters_, req.method, req.path);
  auto reply = [&](HttpResponse r) { responder->send(std::move(r)); };
  const std::vector<std::string> p = split_path(req.path);
  const std::string& m = req.method;

  // Route first: an unknown path is 404 and a known path with the wrong method 405, for anyone.
  enum class Route { health, metrics, tenants, tenant, images, image, workers, worker, signal, wait, logs, messages, stats, none };
  Route route = Route::none;
  std::vector<std::string> methods;
  auto is = [&](std::initializer_list<const char*> parts) {
    if (p.size() != parts.size()) return false;
    size_t i = 0;
    for (const char* part : parts) {
      if (part[0] != '*' && p[i] != part) return false;
      ++i;
    }
    return true;
  };
  if (is({"v1", "health"})) route = Route::health, methods = {"GET"};
  else if (is({"metrics"})) route = Route::metrics, methods = {"GET"};
  else if (is({"v1", "tenants"})) route = Route::tenants, methods = {"GET", "POST"};
  else if (is({"v1", "tenants", "*"})) route = Route::tenant, methods = {"PATCH", "DELETE"};
  else if (is({"v1", "images"})) route = Route::images, methods = {"GET", "POST"};
  else if (is({"v1", "images", "*"})) route = Route::image, methods = {"PUT", "PATCH", "DELETE"};
  else if (is({"v1", "workers"})) route = Route::workers, methods = {"GET", "POST"};
  else if (is({"v1", "workers", "*"})) route = Route::worker, methods = {"GET", "DELETE"};
  else if (is({"v1", "workers", "*", "signal"})) route = Route::signal, methods = {"POST"};
  else if (is({"v1", "workers", "*", "wait"})) route = Route::wait, methods = {"GET"};
  else if (is({"v1", "workers", "*", "logs"})) route = Route::logs, methods = {"GET"};
  else if (is({"v1", "workers", "*", "messages"})) route = Route::messages, methods = {"POST"};
  else if (is({"v1", "stats"})) route = Route::stats, methods = {"GET"};
  if (route == Route::none) return reply(err(404, "not_found", "no endpoint " + req.path));
  if (std::find(methods.begin(), methods.end(), m) == methods.end()) {
    std::string allow;
    for (auto& x : methods) allow += (allow.empty() ? "" : ", ") + x;
    HttpResponse r = err(405, "method_not_allowed", m + " is not allowed on " + req.path + " (allowed: " + allow + ")");
    r.headers.emplace_back("Allow", allow);
    return reply(std::move(r));
  }

  if (route == Route::health) {
    auto up = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - sup_.started_at());
    return reply(json_response(200, {{"status", sup_.shutting_down() ? "shutting_down" : "ok"},
                                     {"version", "0.1.0"},
                                     {"uptime_ms", up.count()},
                                     {"cgroup", sup_.cgroups().version() == fwp::CgroupVersion::v2 ? "v2" : "v1"},
                                     {"workers_running", sup_.running_total()}}));
  }

  // Authenticate: "Authorization: Bearer <token>".
  Caller caller;
  {
    std::string auth = req.header("authorization");
    const std::string prefix = "Bearer ";
    if (auth.size() <= prefix.size() || auth.compare(0, prefix.size(), prefix) != 0)
      return reply(err(401, "unauthorized", "missing bearer token (Authorization: Bearer <token>)"));
    std::string token = auth.substr(prefix.size());
    if (tokens_equal(token, sup_.config().daemon.admin_token)) caller.admin = true;
    else caller.tenant = sup_.tenants().by_token(token);
    if (!caller.admin && !caller.tenant) return reply(err(401, "unauthorized", "unknown token"));
  }
  auto admin_only = [&]() {
    if (caller.admin) return true;
    reply(err(403, "forbidden", "this endpoint needs the admin token"));
    return false;
  };
  // A worker the caller may see; another tenant's worker is "not found", so ids cannot be probed.
  auto visible_worker = [&](const std::string& id) -> Worker* {
    Worker* w = sup_.find_worker(id);
    if (!w || (!caller.admin && w->tenant != caller.tenant->spec.name)) {
      reply(err(404, "not_found", "no worker " + id));
      return nullptr;
    }
    return w;
  };

  switch (route) {
    case Route::metrics: {
      if (!admin_only()) return;
      HttpResponse r;
      r.status = 200;
      r.content_type = "text/plain; version=0.0.4";
      r.body = render_metrics(sup_, counters_);
      return reply(std::move(r));
    }
    case Route::tenants: {
      if (!admin_only()) return;
      if (m == "GET") {
        json list = json::array();
        for (Tenant* t : sup_.tenants().list()) list.push_back(sup_.tenant_json(*t));
        return reply(json_response(200, {{"tenants", list}}));
      }
      json body;
      std::string e;
      if (!parse_body(req, body, e)) return reply(err(400, "bad_request", e));
      auto spec = tenant_from_json(body);
      if (!spec.ok()) return reply(err(400, "bad_request", spec.error().message));
      if (sup_.tenants().find(spec->name)) return reply(err(409, "conflict", "tenant " + spec->name + " already exists"));
      auto added = sup_.add_tenant(spec.value());
      if (!added.ok()) return reply(err(400, "bad_request", added.error().message));
      Tenant* t = added.value();
      // Kept, or not added: a tenant that vanished at plumed's next start would surprise its
      // clients much later. A tenant just added has no workers, so it goes at once.
      if (std::string not_saved = state_.record_tenant(t->spec); !not_saved.empty()) {
        const std::string name = t->spec.name;
        sup_.remove_tenant(*t, /*force=*/false, std::make_shared<NoResponse>());
        log::error("api_state.save", {{"tenant", name}, {"error", not_saved}, {"then", "not added"}});
        return reply(err(500, "state_not_saved", "tenant " + name + " was not added: " + not_saved));
      }
      return reply(json_response(201, sup_.tenant_json(*t)));
    }
    case Route::tenant: {
      if (!admin_only()) return;
      Tenant* t = sup_.tenants().find(p[2]);
      if (!t) return reply(err(404, "not_found", "no tenant " + p[2]));
      if (t->removing) return reply(err(409, "conflict", "tenant " + p[2] + " is being removed"));
      if (m == "PATCH") {
        json body;
        std::string e;
        if (!parse_body(req, body, e)) return reply(err(400, "bad_request", e));
        return reply(update_tenant(*t, body));
      }
      const std::string name = t->spec.name;
      if (sup_.config_names_tenant(name)) return reply(owned_by_config("tenant " + name));
      auto forget = [this, name]() {
        if (std::string e = state_.forget_tenant(name); !e.empty()) log_not_forgotten("tenant " + name, e, state_);
      };
      return sup_.remove_tenant(*t, query_flag(req, "force"), std::make_shared<OnSuccess>(responder, forget));
    }
    case Route::images: {
      if (m == "GET") {
        json list = json::array();
        for (Image* i : sup_.images().list())
          list.push_back(image_json(*i, sup_));
        return reply(json_response(200, {{"images", list}}));
      }
      if (!admin_only()) return;
      json body;
      std::string e;
      if (!parse_body(req, body, e)) return reply(err(400, "bad_request", e));
      auto spec = image_from_json(body);
      if (!spec.ok()) return reply(err(400, "bad_request", spec.error().message));
      if (sup_.images().find(spec->name)) return reply(err(409, "conflict", "image " + spec->name + " already exists"));
      auto added = sup_.images().add(spec.value());
      if (!added.ok()) return reply(err(400, "bad_request", added.error().message));
      Image* i = added.value();
      if (std::string not_saved = state_.record_image(i->spec); !not_saved.empty()) {
        const std::string name = i->spec.name;
        (void)sup_.images().remove(name);
        log::error("api_state.save", {{"image", name}, {"error", not_saved}, {"then", "not added"}});
        return reply(err(500, "state_not_saved", "image " + name + " was not added: " + not_saved));
      }
      log::info("image.add", {{"image", i->spec.name}, {"rootfs", i->rootfs_path}, {"seccomp", i->filter.source}});
      return reply(json_response(201, image_json(*i, sup_)));
    }
    case Route::image: {
      if (!admin_only()) return;
      if (m == "PATCH") {
        json body;
        std::string e;
        if (!parse_body(req, body, e)) return reply(err(400, "bad_request", e));
        return reply(update_image(p[2], body));
      }
      if (m == "PUT") {
        json body;
        std::string e;
        if (!parse_body(req, body, e)) return reply(err(400, "bad_request", e));
        return reply(replace_image(p[2], std::move(body), query_flag(req, "force")));
      }
      if (sup_.config_names_image(p[2])) return reply(owned_by_config("image " + p[2]));
      auto removed = sup_.remove_image(p[2], query_flag(req, "force"));
      if (!removed.ok()) return reply(err(409, "conflict", removed.error().message));
      if (!removed.value()) return reply(err(404, "not_found", "no image " + p[2]));
      if (std::string e = state_.forget_image(p[2]); !e.empty()) log_not_forgotten("image " + p[2], e, state_);
      return reply(no_content());
    }
    case Route::workers: {
      if (m == "GET") {
        Tenant* only = caller.tenant;
        if (caller.admin && req.query.count("tenant")) {
          only = sup_.tenants().find(req.query.at("tenant"));
          if (!only) return reply(err(404, "not_found", "no tenant " + req.query.at("tenant")));
        }
        json list = json::array();
        for (Worker* w : sup_.workers(only)) list.push_back(sup_.worker_json_now(*w));
        return reply(json_response(200, {{"workers", list}}));
      }
      json body;
      std::string e;
      if (!parse_body(req, body, e)) return reply(err(400, "bad_request", e));
      auto spec = run_spec_from_json(body);
      if (!spec.ok()) return reply(err(400, "bad_request", spec.error().message));
      Tenant* tenant = caller.tenant;
      if (caller.admin) {
        if (spec->tenant.empty()) return reply(err(400, "bad_request", "tenant: required when the admin starts a worker"));
        tenant = sup_.tenants().find(spec->tenant);
        if (!tenant) return reply(err(404, "not_found", "no tenant " + spec->tenant));
      } else if (!spec->tenant.empty() && spec->tenant != tenant->spec.name) {
        return reply(err(403, "forbidden", "a tenant can only start its own workers"));
      }
      return sup_.run_worker(*tenant, std::move(spec.value()), responder);
    }
    case Route::worker: {
      Worker* w = visible_worker(p[2]);
      if (!w) return;
      if (m == "GET") return reply(json_response(200, sup_.worker_json_now(*w)));
      if (!sup_.remove_worker(p[2])) return reply(err(409, "conflict", "worker " + p[2] + " is still running"));
      return reply(no_content());
    }
    case Route::signal: {
      Worker* w = visible_worker(p[2]);
      if (!w) return;
      json body;
      std::string e;
      if (!parse_body(req, body, e)) return reply(err(400, "bad_request", e));
      if (!body.is_object() || !body.contains("signal")) return reply(err(400, "bad_request", "signal: required"));
      const json& s = body["signal"];
      int sig = 0;
      if (s.is_string()) sig = signal_from_name(s.get<std::string>());
      else if (s.is_number_integer() && s.get<int64_t>() >= 1 && s.get<int64_t>() <= 64) sig = static_cast<int>(s.get<int64_t>());
      if (sig <= 0) return reply(err(400, "bad_request", "signal: unknown signal " + s.dump()));
      if (w->state != WorkerState::running) return reply(err(409, "conflict", "worker " + w->id + " is not running"));
      if (auto r = sup_.signal_worker(*w, sig); !r.ok()) return reply(err(409, "conflict", r.error().message()));
      return reply(json_response(202, sup_.worker_json(*w)));
    }
    case Route::wait: {
      Worker* w = visible_worker(p[2]);
      if (!w) return;
      uint64_t timeout = 0;
      if (!query_count(req, "timeout_ms", timeout))
        return reply(err(400, "bad_request", "timeout_ms: expected a non-negative integer"));
      return sup_.wait_worker(*w, timeout, responder);
    }
    case Route::logs: {
      Worker* w = visible_worker(p[2]);
      if (!w) return;
      std::string stream = req.query.count("stream") ? req.query.at("stream") : "stdout";
      if (stream != "stdout" && stream != "stderr") return reply(err(400, "bad_request", "stream: stdout or stderr"));
      uint64_t since = 0, wait_ms = 0;
      if (!query_count(req, "since", since)) return reply(err(400, "bad_request", "since: expected a byte offset"));
      if (!query_count(req, "wait_ms", wait_ms) || wait_ms > 600000)
        return reply(err(400, "bad_request", "wait_ms: expected milliseconds, at most 600000"));
      return sup_.worker_log(*w, stream == "stdout", since, wait_ms, responder);
    }
    case Route::messages: {
      Worker* w = visible_worker(p[2]);
      if (!w) return;
      json body;
      std::string e;
      if (!parse_body(req, body, e)) return reply(err(400, "bad_request", e));
      auto asked = messages_request_from_json(body);
      if (!asked.ok()) return reply(err(400, "bad_request", asked.error().message));
      return sup_.send_instance_messages(*w, *asked, responder);
    }
    case Route::stats: {
      json list = json::array();
      for (Tenant* t : sup_.tenants().list())
        if (caller.admin || t == caller.tenant) list.push_back(sup_.tenant_stats_json(*t));
      return reply(json_response(200, {{"tenants", list}}));
    }
    default:
      return reply(err(404, "not_found", "no endpoint " + req.path));
  }
}

}  // namespace plume::kernel
