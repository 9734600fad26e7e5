// Workers end to end through the API: exit codes, logs, signals, OOM, timeouts, spawn failures,
// max_workers, stats and metrics, tenants (API and CLI) and images (rootfs dir and OCI bundle).
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "e2e.h"
#include "support/proc_status.h"

namespace plume::test {
namespace {

std::string state_of(const json& w) { return w.value("state", std::string()); }
json exit_of(const json& w) { return w.contains("exit") ? w["exit"] : json::object(); }

class ApiWorkers : public ::testing::Test {
 protected:
  void SetUp() override {
    PLUME_SKIP_UNLESS_ROOT();
    ASSERT_TRUE(plumed_.start());
    token_ = add_tenant(plumed_, "alpha");
  }

  json run_and_wait(const json& spec) {
    json w = run_worker(plumed_, token_, spec);
    if (!w.contains("id")) return w;
    return wait_worker(plumed_, token_, w["id"]);
  }
  std::string log(const std::string& id, const std::string& stream) {
    auto r = plumed_.request("GET", "/v1/workers/" + id + "/logs?stream=" + stream, token_);
    EXPECT_EQ(r.status, 200) << show(r);
    EXPECT_EQ(r.header("content-type").substr(0, 10), "text/plain");
    return r.body;
  }

  Plumed plumed_;
  std::string token_;
};

TEST_F(ApiWorkers, ExitCodeAndLogs) {
  json w = run_worker(plumed_, token_, {{"argv", {"/bin/sh", "-c", "echo out; echo err >&2; exit 3"}}});
  ASSERT_TRUE(w.contains("id"));
  EXPECT_EQ(state_of(w), "running");
  EXPECT_GT(w.value("pid", 0), 0);
  EXPECT_EQ(w.value("tenant", std::string()), "alpha");
  EXPECT_EQ(w.value("image", std::string()), "host");
  std::string id = w["id"];
  EXPECT_TRUE(id.size() == 10 && id.rfind("w-", 0) == 0 &&
              id.find_first_not_of("0123456789abcdef", 2) == std::string::npos)
      << id;
  json done = wait_worker(plumed_, token_, id);
  EXPECT_EQ(state_of(done), "exited") << done.dump();
  EXPECT_EQ(exit_of(done).value("cause", std::string()), "exit") << done.dump();
  EXPECT_EQ(exit_of(done).value("code", -1), 3) << done.dump();
  EXPECT_TRUE(done.contains("ended_at")) << done.dump();
  EXPECT_EQ(log(id, "stdout"), "out\n");
  EXPECT_EQ(log(id, "stderr"), "err\n");
  // Removing the record: 204, then it is gone.
  EXPECT_EQ(plumed_.request("DELETE", "/v1/workers/" + id, token_).status, 204);
  EXPECT_EQ(plumed_.request("GET", "/v1/workers/" + id, token_).status, 404);
}

// plumed clones its workers through its spawn helper (plume/fwp/spawn_service.h), forked before
// plumed maps anything big: a worker is still plumed's own child, and the helper holds none of
// plumed's descriptors (its API socket, its lock, its rings).
TEST_F(ApiWorkers, WorkersAreClonedByTheSpawnHelperYetStayPlumedsChildren) {
  json w = run_worker(plumed_, token_, {{"argv", {"/bin/sleep", "30"}}});
  ASSERT_TRUE(w.contains("id")) << w.dump();
  const pid_t pid = w.value("pid", 0);
  ASSERT_GT(pid, 0);
  EXPECT_EQ(proc_status_field(pid, "PPid"), std::to_string(plumed_.pid()));
  pid_t helper = 0;
  for (const ChildProcess& c : children_of(plumed_.pid())) {
    if (c.comm == "plume-spawn") helper = c.pid;
  }
  ASSERT_GT(helper, 0) << "no spawn helper among plumed's children\n" << plumed_.stderr_text();
  EXPECT_NE(plumed_.stderr_text().find("event=plumed.spawn_helper pid=" + std::to_string(helper)), std::string::npos);
  std::set<std::string> fds;
  for (const auto& e : std::filesystem::directory_iterator("/proc/" + std::to_string(helper) + "/fd"))
    fds.insert(e.path().filename().string());
  EXPECT_EQ(fds, (std::set<std::string>{"0", "1", "2", "3", "4"}));
  auto r = plumed_.request("POST", "/v1/workers/" + w["id"].get<std::string>() + "/signal", token_, R"({"signal":"KILL"})");
  EXPECT_EQ(r.status, 202) << show(r);
  json done = wait_worker(plumed_, token_, w["id"]);
  EXPECT_EQ(exit_of(done).value("signal", 0), 9) << done.dump();
}

// plumed execs its helper (fwp/plume-spawn): one that is killed is replaced, and workers still
// start, cloned by the new one.
TEST_F(ApiWorkers, AKilledSpawnHelperIsReplaced) {
  auto helper_now = [&] {
    for (const ChildProcess& c : children_of(plumed_.pid())) {
      if (c.comm == "plume-spawn") return c.pid;
    }
    return 0;
  };
  const pid_t helper = helper_now();
  ASSERT_GT(helper, 0);
  ASSERT_EQ(::kill(helper, SIGKILL), 0);
  // plumed sees its end on the answer socket it watches. (A start that raced the death is
  // failed, 422 spawn_failed: the helper may have cloned it; docs/fwp.md.)
  for (int i = 0; i < 250 && plumed_.stderr_text().find("event=fwp.spawn_helper.restarted") == std::string::npos; ++i)
    ::poll(nullptr, 0, 20);  // bounded: 5 s
  const std::string log = plumed_.stderr_text();
  ASSERT_NE(log.find("event=fwp.spawn_helper.gone pid=" + std::to_string(helper)), std::string::npos) << log;
  ASSERT_NE(log.find("event=fwp.spawn_helper.restarted"), std::string::npos) << log;
  const pid_t replacement = helper_now();
  EXPECT_GT(replacement, 0);
  EXPECT_NE(replacement, helper);
  EXPECT_NE(log.find("pid=" + std::to_string(replacement) + " dead=" + std::to_string(helper)), std::string::npos) << log;
  json done = run_and_wait({{"argv", {"/bin/sh", "-c", "exit 4"}}});
  EXPECT_EQ(exit_of(done).value("code", -1), 4) << done.dump();
  json again = run_and_wait({{"argv", {"/bin/sh", "-c", "exit 5"}}});
  EXPECT_EQ(exit_of(again).value("code", -1), 5) << again.dump();
  EXPECT_EQ(helper_now(), replacement);
  EXPECT_EQ(plumed_.request("GET", "/v1/health", token_).status, 200);
  const std::string metrics = plumed_.admin("GET", "/metrics").body;
  EXPECT_NE(metrics.find("\nplume_spawn_helper_up 1\n"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("\nplume_spawn_helper_restarts_total 1\n"), std::string::npos) << metrics;
}

TEST_F(ApiWorkers, KilledBySignal) {
  json w = run_worker(plumed_, token_, {{"argv", {"/bin/sleep", "30"}}});
  ASSERT_TRUE(w.contains("id"));
  std::string id = w["id"];
  auto still = plumed_.request("GET", "/v1/workers/" + id + "/wait?timeout_ms=100", token_);
  ASSERT_EQ(still.status, 200) << show(still);
  EXPECT_EQ(state_of(json_of(still)), "running");
  EXPECT_EQ(plumed_.request("DELETE", "/v1/workers/" + id, token_).status, 409);  // still running
  auto r = plumed_.request("POST", "/v1/workers/" + id + "/signal", token_, R"({"signal":"KILL"})");
  EXPECT_EQ(r.status, 202) << show(r);
  json done = wait_worker(plumed_, token_, id);
  EXPECT_EQ(exit_of(done).value("cause", std::string()), "signal") << done.dump();
  EXPECT_EQ(exit_of(done).value("signal", 0), 9) << done.dump();
  EXPECT_EQ(exit_of(done).value("signal_name", std::string()), "KILL") << done.dump();
  EXPECT_TRUE(process_gone(w["pid"].get<pid_t>(), 5000ms));
}

TEST_F(ApiWorkers, SignalByNumberAndSigName) {
  for (json sig : {json(15), json("SIGTERM")}) {
    json w = run_worker(plumed_, token_, {{"argv", {"/bin/sleep", "30"}}});
    ASSERT_TRUE(w.contains("id"));
    auto r = plumed_.request("POST", "/v1/workers/" + w["id"].get<std::string>() + "/signal", token_,
                             json{{"signal", sig}}.dump());
    EXPECT_EQ(r.status, 202) << show(r);
    json done = wait_worker(plumed_, token_, w["id"], 5000);
    EXPECT_EQ(exit_of(done).value("signal", 0), 15) << done.dump();
    EXPECT_EQ(exit_of(done).value("signal_name", std::string()), "TERM") << done.dump();
    plumed_.request("POST", "/v1/workers/" + w["id"].get<std::string>() + "/signal", token_, R"({"signal":"KILL"})");
  }
}

TEST_F(ApiWorkers, MemoryHogIsOomKilled) {
  // The host image shows only /usr, /bin, /lib, /etc...: the (static) hog goes into an image.
  TempDir dir;
  std::string rootfs = dir.path() + "/rootfs";
  ASSERT_EQ(make_busybox_rootfs(rootfs), "");
  {
    std::ifstream in(PLUME_MEMHOG, std::ios::binary);
    std::ofstream out(rootfs + "/bin/memhog", std::ios::binary);
    out << in.rdbuf();
  }
  ASSERT_EQ(::chmod((rootfs + "/bin/memhog").c_str(), 0755), 0);
  auto img = plumed_.admin("POST", "/v1/images", json{{"name", "hog"}, {"rootfs", rootfs}}.dump());
  ASSERT_EQ(img.status, 201) << show(img);
  json done = run_and_wait({{"image", "hog"}, {"argv", {"/bin/memhog", "512"}}, {"limits", {{"memory_bytes", 32 << 20}}}});
  EXPECT_EQ(exit_of(done).value("cause", std::string()), "oom") << done.dump();
  EXPECT_GT(done.value("peak_memory_bytes", uint64_t{0}), uint64_t{16} << 20) << done.dump();
  EXPECT_LE(done.value("peak_memory_bytes", uint64_t{0}), uint64_t{40} << 20) << done.dump();
  // The same hog with room enough exits normally: the limit, not the hog, made the difference.
  json fine = run_and_wait({{"image", "hog"}, {"argv", {"/bin/memhog", "8"}}, {"limits", {{"memory_bytes", 64 << 20}}}});
  EXPECT_EQ(exit_of(fine).value("cause", std::string()), "exit") << fine.dump();
  EXPECT_EQ(exit_of(fine).value("code", -1), 0) << fine.dump();
}

TEST_F(ApiWorkers, TimeoutIsALimitKill) {
  auto t0 = std::chrono::steady_clock::now();
  json done = run_and_wait({{"argv", {"/bin/sleep", "10"}}, {"timeout_ms", 200}});
  auto elapsed = std::chrono::steady_clock::now() - t0;
  EXPECT_EQ(exit_of(done).value("cause", std::string()), "limit") << done.dump();
  EXPECT_LT(elapsed, 5s);
}

TEST_F(ApiWorkers, MissingBinaryIs422NamingExecve) {
  auto r = start_worker(plumed_, token_, {{"argv", {"/nonexistent/binary"}}});
  EXPECT_EQ(r.status, 422) << show(r);
  json j = json_of(r);
  ASSERT_TRUE(j.contains("error")) << show(r);
  EXPECT_EQ(j["error"].value("code", std::string()), "spawn_failed");
  std::string msg = j["error"].value("message", std::string());
  EXPECT_NE(msg.find("execve"), std::string::npos) << msg;
  EXPECT_NE(msg.find("No such file"), std::string::npos) << msg;
  ASSERT_TRUE(j.contains("worker")) << show(r);
  EXPECT_EQ(state_of(j["worker"]), "failed");
  EXPECT_EQ(exit_of(j["worker"]).value("cause", std::string()), "spawn_failed");
  EXPECT_EQ(j["worker"].value("pid", -1), 0);
}

TEST_F(ApiWorkers, MaxWorkersIs429) {
  std::string t = add_tenant(plumed_, "small", {{"max_workers", 2}});
  std::vector<std::string> ids;
  for (int i = 0; i < 2; ++i) {
    json w = run_worker(plumed_, t, {{"argv", {"/bin/sleep", "30"}}});
    ASSERT_TRUE(w.contains("id"));
    ids.push_back(w["id"]);
  }
  auto r = start_worker(plumed_, t, {{"argv", {"/bin/sleep", "30"}}});
  EXPECT_EQ(r.status, 429) << show(r);
  EXPECT_EQ(json_of(r)["error"].value("code", std::string()), "limit_exceeded");
  // Another tenant is not affected by small's limit.
  json other = run_worker(plumed_, token_, {{"argv", {"/bin/true"}}});
  EXPECT_TRUE(other.contains("id"));
  // Once one ends, there is room again.
  ASSERT_EQ(plumed_.request("POST", "/v1/workers/" + ids[0] + "/signal", t, R"({"signal":"KILL"})").status, 202);
  (void)wait_worker(plumed_, t, ids[0]);
  json again = run_worker(plumed_, t, {{"argv", {"/bin/true"}}});
  EXPECT_TRUE(again.contains("id"));
  plumed_.request("POST", "/v1/workers/" + ids[1] + "/signal", t, R"({"signal":"KILL"})");
}

// Finds `name{labels} value` in Prometheus text; -1 when absent.
double metric(const std::string& text, const std::string& name_and_labels) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(name_and_labels + " ", 0) == 0) return std::stod(line.substr(name_and_labels.size() + 1));
  }
  return -1;
}

TEST_F(ApiWorkers, StatsAndMetricsCountEachExitCause) {
  std::string t = add_tenant(plumed_, "counted");
  auto run = [&](const json& spec) {
    json w = run_worker(plumed_, t, spec);
    if (w.contains("id")) return wait_worker(plumed_, t, w["id"]);
    return w;
  };
  run({{"argv", {"/bin/true"}}});
  run({{"argv", {"/bin/sh", "-c", "exit 3"}}});
  run({{"argv", {"/bin/sleep", "10"}}, {"timeout_ms", 100}});
  json s = run_worker(plumed_, t, {{"argv", {"/bin/sleep", "30"}}});
  ASSERT_TRUE(s.contains("id"));
  plumed_.request("POST", "/v1/workers/" + s["id"].get<std::string>() + "/signal", t, R"({"signal":"KILL"})");
  (void)wait_worker(plumed_, t, s["id"]);
  EXPECT_EQ(start_worker(plumed_, t, {{"argv", {"/nonexistent/binary"}}}).status, 422);
  json running = run_worker(plumed_, t, {{"argv", {"/bin/sleep", "30"}}});

  auto r = plumed_.request("GET", "/v1/stats", t);
  ASSERT_EQ(r.status, 200) << show(r);
  json stats = json_of(r);
  ASSERT_EQ(stats["tenants"].size(), 1u) << "a tenant sees only its own stats: " << r.body;
  json st = stats["tenants"][0];
  EXPECT_EQ(st.value("name", std::string()), "counted");
  EXPECT_EQ(st["exited"].value("exit", -1), 2) << st.dump();
  EXPECT_EQ(st["exited"].value("signal", -1), 1) << st.dump();
  EXPECT_EQ(st["exited"].value("limit", -1), 1) << st.dump();
  EXPECT_EQ(st["exited"].value("oom", -1), 0) << st.dump();
  EXPECT_EQ(st["exited"].value("spawn_failed", -1), 1) << st.dump();
  EXPECT_EQ(st.value("workers_running", -1), 1) << st.dump();
  int started = st.value("workers_started", -1);
  EXPECT_TRUE(started == 5 || started == 6) << "5 started (+1 if spawn failures count): " << st.dump();
  EXPECT_GT(st.value("cpu_ns", uint64_t{0}), 0u) << st.dump();
  EXPECT_GT(st.value("peak_memory_bytes", uint64_t{0}), 0u) << st.dump();

  // The admin sees every tenant; /metrics says the same numbers.
  json all = json_of(plumed_.admin("GET", "/v1/stats"));
  EXPECT_GE(all["tenants"].size(), 2u);
  auto m = plumed_.admin("GET", "/metrics");
  ASSERT_EQ(m.status, 200) << show(m);
  EXPECT_EQ(m.header("content-type").substr(0, 10), "text/plain");
  EXPECT_EQ(metric(m.body, "plume_up"), 1);
  EXPECT_NE(m.body.find("# TYPE plume_workers_started_total counter"), std::string::npos) << m.body;
  EXPECT_NE(m.body.find("# HELP plume_workers_running"), std::string::npos) << m.body;
  EXPECT_EQ(metric(m.body, R"(plume_workers_started_total{tenant="counted"})"), started) << m.body;
  EXPECT_EQ(metric(m.body, R"(plume_workers_running{tenant="counted"})"), 1) << m.body;
  EXPECT_EQ(metric(m.body, R"(plume_workers_exited_total{tenant="counted",cause="exit"})"), 2) << m.body;
  EXPECT_EQ(metric(m.body, R"(plume_workers_exited_total{tenant="counted",cause="signal"})"), 1) << m.body;
  EXPECT_EQ(metric(m.body, R"(plume_workers_exited_total{tenant="counted",cause="limit"})"), 1) << m.body;
  EXPECT_EQ(metric(m.body, R"(plume_workers_exited_total{tenant="counted",cause="spawn_failed"})"), 1) << m.body;
  EXPECT_GT(metric(m.body, R"(plume_worker_cpu_seconds_total{tenant="counted"})"), 0) << m.body;
  // A peak only grows, and the running worker's is read afresh for each answer: it may have grown
  // between the two.
  EXPECT_GE(metric(m.body, R"(plume_worker_peak_memory_bytes{tenant="counted"})"),
            static_cast<double>(st.value("peak_memory_bytes", uint64_t{0})))
      << m.body;
  EXPECT_GT(metric(m.body, R"(plume_http_requests_total{code="200"})"), 0) << m.body;
  if (running.contains("id"))
    plumed_.request("POST", "/v1/workers/" + running["id"].get<std::string>() + "/signal", t, R"({"signal":"KILL"})");
}

TEST_F(ApiWorkers, TenantsThroughTheApi) {
  json spec = {{"name", "gamma"}, {"token", "gamma-secret-token"}, {"uid_base", 400000}, {"uid_count", 1000},
               {"limits", {{"memory_bytes", "128M"}, {"pids_max", 32}, {"max_workers", 3}}}};
  auto r = plumed_.admin("POST", "/v1/tenants", spec.dump());
  ASSERT_EQ(r.status, 201) << show(r);
  EXPECT_EQ(r.body.find("gamma-secret-token"), std::string::npos) << "the token must never be returned";
  json t = json_of(r);
  EXPECT_EQ(t.value("name", std::string()), "gamma");
  EXPECT_EQ(t.value("uid_base", 0), 400000);
  EXPECT_EQ(t.value("uid_count", 0), 1000);
  EXPECT_EQ(t["limits"].value("memory_bytes", uint64_t{0}), uint64_t{128} << 20) << r.body;
  EXPECT_EQ(t["limits"].value("max_workers", 0), 3);
  EXPECT_EQ(plumed_.admin("POST", "/v1/tenants", spec.dump()).status, 409);
  // Overlapping uid range is refused.
  json overlap = {{"name", "delta"}, {"token", "delta-secret-token"}, {"uid_base", 400500}, {"uid_count", 1000}};
  EXPECT_EQ(plumed_.admin("POST", "/v1/tenants", overlap.dump()).status, 400);

  auto list = plumed_.admin("GET", "/v1/tenants");
  EXPECT_EQ(list.body.find("gamma-secret-token"), std::string::npos);
  bool found = false;
  json tenants = json_of(list);
  for (const auto& x : tenants["tenants"]) found |= x.value("name", std::string()) == "gamma";
  EXPECT_TRUE(found) << list.body;

  // The new token works; a worker blocks a plain delete; force kills it.
  json w = run_worker(plumed_, "gamma-secret-token", {{"argv", {"/bin/sleep", "30"}}});
  ASSERT_TRUE(w.contains("pid"));
  EXPECT_EQ(plumed_.admin("DELETE", "/v1/tenants/gamma").status, 409);
  EXPECT_EQ(plumed_.admin("DELETE", "/v1/tenants/gamma?force=true").status, 204);
  EXPECT_TRUE(process_gone(w["pid"].get<pid_t>(), 5000ms));
  EXPECT_EQ(plumed_.request("GET", "/v1/workers", "gamma-secret-token").status, 401);
  EXPECT_EQ(plumed_.admin("DELETE", "/v1/tenants/gamma").status, 404);
}

TEST_F(ApiWorkers, TenantsThroughTheCli) {
  std::vector<std::string> env = {"PLUME_SOCKET=" + plumed_.socket(), "PLUME_TOKEN=" + plumed_.admin_token()};
  auto add = run_cli({"tenant", "add", "clitenant", "--token", "cli-tenant-token", "--memory", "128M",
                      "--max-workers", "3", "--pids", "20"},
                     env);
  EXPECT_EQ(add.exit_code, 0) << add.err;
  auto ls = run_cli({"tenant", "ls"}, env);
  EXPECT_EQ(ls.exit_code, 0) << ls.err;
  EXPECT_NE(ls.out.find("NAME"), std::string::npos) << ls.out;
  EXPECT_NE(ls.out.find("clitenant"), std::string::npos) << ls.out;
  EXPECT_NE(ls.out.find("128M"), std::string::npos) << ls.out;
  auto lsj = run_cli({"--json", "tenant", "ls"}, env);
  json j = json::parse(lsj.out, nullptr, false);
  ASSERT_TRUE(j.contains("tenants")) << lsj.out;
  bool found = false;
  for (const auto& t : j["tenants"])
    if (t.value("name", std::string()) == "clitenant") {
      found = true;
      EXPECT_EQ(t["limits"].value("pids_max", 0), 20);
    }
  EXPECT_TRUE(found);
  auto dup = run_cli({"tenant", "add", "clitenant", "--token", "cli-tenant-token"}, env);
  EXPECT_EQ(dup.exit_code, 1);
  EXPECT_EQ(dup.err.rfind("plume: conflict: ", 0), 0u) << dup.err;
  EXPECT_EQ(run_cli({"tenant", "rm", "clitenant"}, env).exit_code, 0);
  auto again = run_cli({"tenant", "rm", "clitenant"}, env);
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_EQ(again.err.rfind("plume: not_found: ", 0), 0u) << again.err;
}

class ApiImages : public ApiWorkers {};

TEST_F(ApiImages, RootfsDirAndOciBundle) {
  TempDir dir;
  std::string rootfs = dir.path() + "/rootfs";
  ASSERT_EQ(make_busybox_rootfs(rootfs), "");
  { std::ofstream(rootfs + "/etc/marker") << "rootfs-marker\n"; }
  std::string bundle = dir.path() + "/bundle";
  ASSERT_EQ(::mkdir(bundle.c_str(), 0755), 0);
  ASSERT_EQ(make_busybox_rootfs(bundle + "/fs"), "");
  { std::ofstream(bundle + "/fs/etc/marker") << "bundle-marker\n"; }
  {
    json config = {{"ociVersion", "1.0.2"},
                   {"root", {{"path", "fs"}, {"readonly", true}}},
                   {"process", {{"args", {"/bin/sh"}}, {"cwd", "/"}, {"env", {"PATH=/bin"}}}}};
    std::ofstream(bundle + "/config.json") << config.dump(2);
  }

  auto r1 = plumed_.admin("POST", "/v1/images", json{{"name", "bb"}, {"rootfs", rootfs}}.dump());
  ASSERT_EQ(r1.status, 201) << show(r1);
  EXPECT_EQ(json_of(r1).value("source", std::string()), "rootfs");
  EXPECT_EQ(json_of(r1).value("rootfs", std::string()), rootfs);
  auto r2 = plumed_.admin("POST", "/v1/images", json{{"name", "oci"}, {"bundle", bundle}}.dump());
  ASSERT_EQ(r2.status, 201) << show(r2);
  EXPECT_EQ(json_of(r2).value("source", std::string()), "bundle");
  EXPECT_EQ(plumed_.admin("POST", "/v1/images", json{{"name", "bb"}, {"rootfs", rootfs}}.dump()).status, 409);

  auto images = json_of(plumed_.request("GET", "/v1/images", token_));
  std::set<std::string> names;
  for (const auto& im : images["images"]) names.insert(im.value("name", std::string()));
  EXPECT_TRUE(names.count("host") && names.count("bb") && names.count("oci")) << images.dump();

  for (const auto& [image, marker] : {std::pair{"bb", "rootfs-marker"}, std::pair{"oci", "bundle-marker"}}) {
    SCOPED_TRACE(image);
    json w = run_worker(plumed_, token_, {{"image", image}, {"argv", {"/bin/sh", "-c", "cat /etc/marker; echo $0"}}});
    ASSERT_TRUE(w.contains("id"));
    EXPECT_EQ(w.value("image", std::string()), image);
    json done = wait_worker(plumed_, token_, w["id"]);
    EXPECT_EQ(exit_of(done).value("cause", std::string()), "exit") << done.dump();
    EXPECT_EQ(exit_of(done).value("code", -1), 0) << done.dump() << log(w["id"], "stderr");
    EXPECT_EQ(log(w["id"], "stdout"), std::string(marker) + "\n/bin/sh\n");
  }
  // The host's binaries are not visible inside the busybox image.
  auto r = start_worker(plumed_, token_, {{"image", "bb"}, {"argv", {PLUME_MEMHOG, "1"}}});
  EXPECT_EQ(r.status, 422) << show(r);

  EXPECT_EQ(plumed_.admin("DELETE", "/v1/images/host").status, 409);
  EXPECT_EQ(plumed_.admin("DELETE", "/v1/images/oci").status, 204);
  EXPECT_EQ(plumed_.admin("DELETE", "/v1/images/oci").status, 404);
  int gone = start_worker(plumed_, token_, {{"image", "oci"}, {"argv", {"/bin/true"}}}).status;
  EXPECT_TRUE(gone == 404 || gone == 400) << gone;
}

}  // namespace
}  // namespace plume::test
