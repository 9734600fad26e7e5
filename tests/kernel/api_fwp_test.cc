// Featherweight instances through plumed: an FWP image (apps/echo, linked with libplume) is
// registered, instances are started from its template and warm pool, fed messages, signalled,
// metered, and cleaned up with plumed.
#include <poll.h>
#include <sched.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "e2e.h"
#include "pidfd_info.h"
#include "plume/fwp/process_usage.h"
#include "support/proc_status.h"

namespace plume::test {
namespace {

class ApiFwp : public ::testing::Test {
 protected:
  void SetUp() override {
    PLUME_SKIP_UNLESS_ROOT();
    ASSERT_TRUE(plumed_.start());
    token_ = add_tenant(plumed_, "alpha");
    json image = {{"name", "echo"}, {"fwp", {{"binary", PLUME_ECHO_APP}, {"pool_size", 2}}}};
    auto r = plumed_.admin("POST", "/v1/images", image.dump());
    ASSERT_EQ(r.status, 201) << show(r);
  }
  std::string log(const std::string& id, const std::string& stream = "stdout") {
    auto r = plumed_.request("GET", "/v1/workers/" + id + "/logs?stream=" + stream, token_);
    EXPECT_EQ(r.status, 200) << show(r);
    return r.body;
  }
  // The host pid of a running instance: known once its template has forked it.
  pid_t running_pid(const std::string& id, const std::string& token) { return test::running_pid(plumed_, id, token); }
  // An echo instance that keeps running beside its template's full pool of 2: the worker, and
  // every pid in the template's group (the template, the two parked, the instance).
  void start_one_beside_a_full_pool(json& running, std::vector<pid_t>& group) {
    running = run_worker(plumed_, token_, {{"fwp", true}, {"image", "echo"}, {"input", "stay"}});
    ASSERT_TRUE(running.contains("id")) << running.dump();
    ASSERT_GT(running_pid(running["id"], token_), 0);
    ASSERT_EQ(await_metric(plumed_, kEchoPoolReady, 2), 2);
    group = template_group(plumed_, "alpha", "echo");
    ASSERT_GE(group.size(), 4u);
  }
  static constexpr const char* kEchoPoolReady = "plume_fwp_pool_ready{tenant=\"alpha\",image=\"echo\"}";
  Plumed plumed_;
  std::string token_;
};

std::string ns_of(pid_t pid, const char* ns) {
  char target[128] = {};
  const std::string link = "/proc/" + std::to_string(pid) + "/ns/" + ns;
  const ssize_t n = ::readlink(link.c_str(), target, sizeof target - 1);
  return n > 0 ? std::string(target, static_cast<size_t>(n)) : "<" + link + ">";
}

// Live processes whose pid namespace is `ns` (a readlink of /proc/<pid>/ns/pid).
int processes_in(const std::string& ns) {
  int n = 0;
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    const std::string name = e.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    n += ns_of(static_cast<pid_t>(std::stoi(name)), "pid") == ns;
  }
  return n;
}

TEST_F(ApiFwp, InstanceServesItsMessagesAndExits) {
  // echo answers each message and ends on an empty one.
  json w = run_worker(plumed_, token_, {{"fwp", true}, {"image", "echo"}, {"input", {"hi", "there", ""}}});
  ASSERT_TRUE(w.contains("id")) << w.dump();
  EXPECT_EQ(w.value("kind", std::string()), "fwp");
  // The first start of a tenant's image starts its template: the pool is empty, so it forks.
  EXPECT_EQ(w.value("start_path", std::string()), "fork") << w.dump();
  EXPECT_EQ(w.value("state", std::string()), "running");
  json done = wait_worker(plumed_, token_, w["id"]);
  EXPECT_EQ(done.value("state", std::string()), "exited") << done.dump();
  EXPECT_EQ(done["exit"].value("cause", std::string()), "exit") << done.dump();
  EXPECT_EQ(done["exit"].value("code", -1), 0) << done.dump();
  // Its host pid is known unless it ended before plumed read its fork answer (then 0): an
  // exited process's pidfd no longer names a pid. A running instance always has one (see below).
  EXPECT_GE(done.value("pid", -1), 0) << done.dump();
  EXPECT_EQ(log(w["id"]), "hi\nthere\n");
  // What it wrote to its own stderr, through its own pipe: this instance's lines only.
  EXPECT_EQ(log(w["id"], "stderr"), "echo: 2 bytes\necho: 5 bytes\n");
}

TEST_F(ApiFwp, ManyStartsComeFromTheTemplateAndPoolAndAreMetered) {
  for (int i = 0; i < 6; ++i) {
    std::string msg = "m" + std::to_string(i);
    json w = run_worker(plumed_, token_, {{"fwp", true}, {"image", "echo"}, {"input", {msg, ""}}});
    ASSERT_TRUE(w.contains("id")) << w.dump();
    json done = wait_worker(plumed_, token_, w["id"]);
    ASSERT_EQ(done["exit"].value("cause", std::string()), "exit") << done.dump();
    EXPECT_EQ(log(w["id"]), msg + "\n");
  }
  auto stats = json_of(plumed_.request("GET", "/v1/stats", token_));
  ASSERT_EQ(stats["tenants"].size(), 1u) << stats.dump();
  EXPECT_EQ(stats["tenants"][0].value("workers_started", 0), 6);
  EXPECT_EQ(stats["tenants"][0]["exited"].value("exit", 0), 6);
  EXPECT_EQ(stats["tenants"][0].value("workers_running", -1), 0);
}

TEST_F(ApiFwp, WarmPoolServesStartsOnceFilledAndMetricsCountThem) {
  // The first start starts the template: nothing parked yet, so it forks.
  json first = run_worker(plumed_, token_, {{"fwp", true}, {"image", "echo"}, {"input", {"a", ""}}});
  ASSERT_EQ(first.value("start_path", std::string()), "fork") << first.dump();
  wait_worker(plumed_, token_, first["id"]);
  // The pool (2) fills in the background; /metrics shows it (polled until a deadline).
  const std::string labels = "{tenant=\"alpha\",image=\"echo\"}";
  EXPECT_EQ(metric(plumed_, "plume_fwp_pool_size" + labels), 2);
  ASSERT_EQ(await_metric(plumed_, "plume_fwp_pool_ready" + labels, 2), 2);
  json second = run_worker(plumed_, token_, {{"fwp", true}, {"image", "echo"}, {"input", {"b", ""}}});
  EXPECT_EQ(second.value("start_path", std::string()), "pool") << second.dump();
  json done = wait_worker(plumed_, token_, second["id"]);
  EXPECT_EQ(done["exit"].value("code", -1), 0) << done.dump();
  EXPECT_EQ(log(second["id"]), "b\n");
  const std::string by_path = "plume_fwp_starts_total{tenant=\"alpha\",image=\"echo\",path=";
  EXPECT_EQ(metric(plumed_, by_path + "\"fork\"}"), 1);
  EXPECT_EQ(metric(plumed_, by_path + "\"pool\"}"), 1);
  EXPECT_EQ(metric(plumed_, "plume_fwp_template_restarts_total" + labels), 0);
}

// PATCH /v1/images/<name> (`plume image set --pool`): the pool of a running template grows in the
// background and shrinks by killing what it parks beyond its new size; 0 sends starts to forks.
TEST_F(ApiFwp, AWarmPoolIsResizedWhileItsTemplateRuns) {
  json first = run_worker(plumed_, token_, {{"fwp", true}, {"image", "echo"}, {"input", {"a", ""}}});
  ASSERT_TRUE(first.contains("id")) << first.dump();
  wait_worker(plumed_, token_, first["id"]);
  const std::string labels = "{tenant=\"alpha\",image=\"echo\"}";
  ASSERT_EQ(await_metric(plumed_, "plume_fwp_pool_ready" + labels, 2), 2);
  // The template's group holds the template and what it parks: its process count shows the
  // instances a smaller pool killed are gone, not just out of the count.
  auto processes = [&]() {
    for (const std::string& dir : cgroup_parent_dirs(plumed_.cgroup_parent())) {
      std::ifstream in(dir + "/alpha/tpl-echo/cgroup.procs");
      if (!in) continue;
      long n = 0;
      for (std::string line; std::getline(in, line);) n += line.empty() ? 0 : 1;
      return n;
    }
    return -1L;
  };
  auto await_processes = [&](long want) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    long seen = processes();
    while (seen != want && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      seen = processes();
    }
    return seen;
  };
  const long with_two = processes();
  ASSERT_GT(with_two, 2);

  auto r = plumed_.admin("PATCH", "/v1/images/echo", R"({"fwp": {"pool_size": 4}})");
  ASSERT_EQ(r.status, 200) << show(r);
  EXPECT_EQ(json_of(r)["fwp"].value("pool_size", -1), 4) << r.body;
  EXPECT_EQ(metric(plumed_, "plume_fwp_pool_size" + labels), 4);
  EXPECT_EQ(await_metric(plumed_, "plume_fwp_pool_ready" + labels, 4), 4);
  EXPECT_EQ(await_processes(with_two + 2), with_two + 2);

  auto cli = run_cli({"image", "set", "echo", "--pool", "1"},
                     {"PLUME_SOCKET=" + plumed_.socket(), "PLUME_TOKEN=" + plumed_.admin_token()});
  EXPECT_EQ(cli.exit_code, 0) << cli.out << cli.err;
  EXPECT_EQ(await_metric(plumed_, "plume_fwp_pool_ready" + labels, 1), 1);
  EXPECT_EQ(await_processes(with_two - 1), with_two - 1);
  json pooled = run_worker(plumed_, token_, {{"fwp", true}, {"image", "echo"}, {"input", {"b", ""}}});
  EXPECT_EQ(pooled.value("start_path", std::string()), "pool") << pooled.dump();
  EXPECT_EQ(wait_worker(plumed_, token_, pooled["id"])["exit"].value("code", -1), 0);
  EXPECT_EQ(log(pooled["id"]), "b\n");

  ASSERT_EQ(plumed_.admin("PATCH", "/v1/images/echo", R"({"fwp": {"pool_size": 0}})").status, 200);
  EXPECT_EQ(await_metric(plumed_, "plume_fwp_pool_ready" + labels, 0), 0);
  json forked = run_worker(plumed_, token_, {{"fwp", true}, {"image", "echo"}, {"input", {"c", ""}}});
  EXPECT_EQ(forked.value("start_path", std::string()), "fork") << forked.dump();
  EXPECT_EQ(wait_worker(plumed_, token_, forked["id"])["exit"].value("code", -1), 0);

  // The rest of an image is what its templates were made from.
  for (const char* body : {R"({"fwp": {"binary": "/bin/true"}})", R"({"rootfs": "/"})", R"({"fwp": {"pool_size": -1}})",
                           R"({"fwp": {"pool_size": 5000}})", R"({"fwp": 3})"}) {
    auto bad = plumed_.admin("PATCH", "/v1/images/echo", body);
    EXPECT_EQ(bad.status, 400) << body << ": " << show(bad);
  }
  auto host = plumed_.admin("PATCH", "/v1/images/host", R"({"fwp": {"pool_size": 1}})");
  EXPECT_EQ(host.status, 400) << show(host);
  EXPECT_NE(host.body.find("has no fwp app"), std::string::npos) << host.body;
  EXPECT_EQ(plumed_.admin("PATCH", "/v1/images/nothing", R"({"fwp": {"pool_size": 1}})").status, 404);
  EXPECT_EQ(plumed_.request("PATCH", "/v1/images/echo", token_, R"({"fwp": {"pool_size": 1}})").status, 403);
}

// DELETE /v1/images/<name> (`plume image rm`): the image's templates go with it, their warm pools
// and groups too, so that an image added again under the name runs its own app and nothing parks
// for one that is gone. Its running instances make it 409, unless forced.
TEST_F(ApiFwp, ARemovedImageTakesItsTemplatesAndWarmPoolsWithIt) {
  json running;
  std::vector<pid_t> group;
  ASSERT_NO_FATAL_FAILURE(start_one_beside_a_full_pool(running, group));
  const std::string pool_ready = kEchoPoolReady;

  auto busy = plumed_.admin("DELETE", "/v1/images/echo");
  EXPECT_EQ(busy.status, 409) << show(busy);
  EXPECT_NE(busy.body.find("1 running instances"), std::string::npos) << busy.body;
  EXPECT_EQ(metric(plumed_, pool_ready), 2);  // refused: nothing was torn down
  auto images_named_echo = [&] {
    int n = 0;
    const json list = json_of(plumed_.admin("GET", "/v1/images"));
    for (const json& i : list["images"]) n += i.value("name", "") == "echo";
    return n;
  };
  EXPECT_EQ(images_named_echo(), 1);

  auto rm = run_cli({"image", "rm", "echo", "--force"},
                    {"PLUME_SOCKET=" + plumed_.socket(), "PLUME_TOKEN=" + plumed_.admin_token()});
  ASSERT_EQ(rm.exit_code, 0) << rm.out << rm.err;
  // Answered once the templates are torn down: their group is gone already, with all it held.
  EXPECT_FALSE(template_group_exists(plumed_, "alpha", "echo"));
  for (pid_t pid : group) EXPECT_TRUE(process_gone(pid, 5s)) << pid;
  EXPECT_EQ(metric(plumed_, pool_ready), -1);
  json ended = wait_worker(plumed_, token_, running["id"]);
  EXPECT_EQ(ended["exit"].value("cause", std::string()), "signal") << ended.dump();
  EXPECT_EQ(ended["exit"].value("signal", 0), SIGKILL) << ended.dump();
  EXPECT_EQ(images_named_echo(), 0);
  EXPECT_EQ(plumed_.admin("DELETE", "/v1/images/echo").status, 404);

  // The name again, for another app: a template of its own runs it, not echo's.
  auto again = plumed_.admin("POST", "/v1/images",
                             json{{"name", "echo"}, {"fwp", {{"binary", PLUME_KVINDEX_APP}, {"pool_size", 0}}}}.dump());
  ASSERT_EQ(again.status, 201) << show(again);
  json kv = run_worker(plumed_, token_, {{"fwp", true}, {"image", "echo"}, {"input", {"stats", ""}}});
  ASSERT_TRUE(kv.contains("id")) << kv.dump();
  EXPECT_EQ(kv.value("start_path", std::string()), "fork") << kv.dump();
  EXPECT_EQ(wait_worker(plumed_, token_, kv["id"])["exit"].value("code", -1), 0);
  EXPECT_EQ(log(kv["id"]).rfind("init_count=1 ", 0), 0u) << log(kv["id"]);
  // Idle, an image goes without force; a tenant cannot remove one.
  EXPECT_EQ(plumed_.request("DELETE", "/v1/images/echo", token_).status, 403);
  EXPECT_EQ(plumed_.admin("DELETE", "/v1/images/echo").status, 204);
  EXPECT_FALSE(template_group_exists(plumed_, "alpha", "echo"));
}

// PUT /v1/images/<name> (`plume image add --replace`): a new description (or a new build of the
// app) takes the place of the old one, checked first; the old templates and pools go.
TEST_F(ApiFwp, AnImageIsReplacedByANewDescription) {
  json running;
  std::vector<pid_t> group;
  ASSERT_NO_FATAL_FAILURE(start_one_beside_a_full_pool(running, group));
  const std::string pool_ready = kEchoPoolReady;

  const json kv = {{"fwp", {{"binary", PLUME_KVINDEX_APP}, {"pool_size", 1}}}};
  auto busy = plumed_.admin("PUT", "/v1/images/echo", kv.dump());
  EXPECT_EQ(busy.status, 409) << show(busy);
  EXPECT_NE(busy.body.find("1 running instances"), std::string::npos) << busy.body;
  // Refused before anything goes: a description that does not check, another name, the built-in
  // image, one that does not exist, a tenant.
  auto bad = plumed_.admin("PUT", "/v1/images/echo?force=true", R"({"fwp": {"binary": "/no/such/app"}})");
  EXPECT_EQ(bad.status, 400) << show(bad);
  EXPECT_NE(bad.body.find("/no/such/app"), std::string::npos) << bad.body;
  EXPECT_EQ(plumed_.admin("PUT", "/v1/images/echo", json{{"name", "other"}, {"fwp", {{"binary", PLUME_KVINDEX_APP}}}}.dump()).status, 400);
  EXPECT_EQ(plumed_.admin("PUT", "/v1/images/host", R"({"rootfs": "/"})").status, 409);
  EXPECT_EQ(plumed_.admin("PUT", "/v1/images/nothing", kv.dump()).status, 404);
  EXPECT_EQ(plumed_.request("PUT", "/v1/images/echo", token_, kv.dump()).status, 403);
  EXPECT_EQ(metric(plumed_, pool_ready), 2);
  EXPECT_TRUE(template_group_exists(plumed_, "alpha", "echo"));

  auto cli = run_cli({"image", "add", "echo", "--fwp-binary", PLUME_KVINDEX_APP, "--pool", "1", "--replace", "--force"},
                     {"PLUME_SOCKET=" + plumed_.socket(), "PLUME_TOKEN=" + plumed_.admin_token()});
  ASSERT_EQ(cli.exit_code, 0) << cli.out << cli.err;
  for (pid_t pid : group) EXPECT_TRUE(process_gone(pid, 5s)) << pid;
  EXPECT_EQ(wait_worker(plumed_, token_, running["id"])["exit"].value("signal", 0), SIGKILL);
  json w = run_worker(plumed_, token_, {{"fwp", true}, {"image", "echo"}, {"input", {"stats", ""}}});
  ASSERT_TRUE(w.contains("id")) << w.dump();
  EXPECT_EQ(w.value("start_path", std::string()), "fork") << w.dump();
  EXPECT_EQ(wait_worker(plumed_, token_, w["id"])["exit"].value("code", -1), 0);
  EXPECT_EQ(log(w["id"]).rfind("init_count=1 ", 0), 0u) << log(w["id"]);
  EXPECT_EQ(await_metric(plumed_, pool_ready, 1), 1);

  // With nothing running, the same description again needs no force: a new build of the app is
  // picked up so.
  auto again = plumed_.admin("PUT", "/v1/images/echo", kv.dump());
  EXPECT_EQ(again.status, 200) << show(again);
  EXPECT_EQ(json_of(again)["fwp"].value("binary", ""), PLUME_KVINDEX_APP) << again.body;
}

TEST_F(ApiFwp, ASpinningStandbyIsConfiguredPerImageAndServesAStart) {
  // At most pool_size of them.
  auto r = plumed_.admin("POST", "/v1/images",
                         json{{"name", "spin"}, {"fwp", {{"binary", PLUME_ECHO_APP}, {"pool_size", 1}, {"spinning_standbys", 2}}}}.dump());
  ASSERT_EQ(r.status, 400) << show(r);
  EXPECT_NE(r.body.find("spinning_standbys: at most pool_size"), std::string::npos) << r.body;
  r = plumed_.admin("POST", "/v1/images",
                    json{{"name", "spin"}, {"fwp", {{"binary", PLUME_ECHO_APP}, {"pool_size", 1}, {"spinning_standbys", 1}}}}.dump());
  ASSERT_EQ(r.status, 201) << show(r);
  EXPECT_EQ(json_of(r)["fwp"].value("spinning_standbys", -1), 1) << r.body;
  json first = run_worker(plumed_, token_, {{"fwp", true}, {"image", "spin"}, {"input", {"a", ""}}});
  ASSERT_EQ(first.value("start_path", std::string()), "fork") << first.dump();
  wait_worker(plumed_, token_, first["id"]);
  const std::string labels = "{tenant=\"alpha\",image=\"spin\"}";
  ASSERT_EQ(await_metric(plumed_, "plume_fwp_pool_ready" + labels, 1), 1);
  // The parked instance polls at SCHED_IDLE (plumed runs as root here: it may raise it again).
  json second = run_worker(plumed_, token_, {{"fwp", true}, {"image", "spin"}, {"input", "b"}});
  EXPECT_EQ(second.value("start_path", std::string()), "pool") << second.dump();
  const pid_t pid = running_pid(second["id"], token_);
  ASSERT_GT(pid, 0);
  EXPECT_EQ(::sched_getscheduler(pid), SCHED_OTHER) << "a started standby still at SCHED_IDLE";
  // It served its message (its stderr pipe is drained as it comes; echo then waits for more, so
  // it is ended, and its channel's answers are collected with its exit).
  const auto served_by = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (log(second["id"], "stderr") != "echo: 1 bytes\n" && std::chrono::steady_clock::now() < served_by) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));  // polling its log, not a guess
  }
  ASSERT_EQ(log(second["id"], "stderr"), "echo: 1 bytes\n");
  auto r2 = plumed_.request("POST", "/v1/workers/" + second["id"].get<std::string>() + "/signal", token_,
                            json{{"signal", "TERM"}}.dump());
  EXPECT_EQ(r2.status, 202) << show(r2);
  json done = wait_worker(plumed_, token_, second["id"]);
  EXPECT_EQ(done["exit"].value("cause", std::string()), "signal") << done.dump();
  EXPECT_EQ(log(second["id"]), "b\n");
}

// The first line plumed logged with `event` on stderr, or "" if none.
std::string log_line(const Plumed& plumed, const std::string& event) {
  const std::string said = plumed.stderr_text();
  const size_t at = said.find(event);
  if (at == std::string::npos) return "";
  return said.substr(at, said.find('\n', at) - at);
}

// A template whose spinning standbys were not granted parks its pool asleep and still serves a
// start from it.
void expect_a_start_from_the_pool(Plumed& plumed, const std::string& token, const std::string& tenant) {
  const std::string labels = "{tenant=\"" + tenant + "\",image=\"spin\"}";
  ASSERT_EQ(await_metric(plumed, "plume_fwp_pool_ready" + labels, 1), 1);
  json pooled = run_worker(plumed, token, {{"fwp", true}, {"image", "spin"}, {"input", {"b", ""}}});
  EXPECT_EQ(pooled.value("start_path", std::string()), "pool") << pooled.dump();
  json done = wait_worker(plumed, token, pooled["id"]);
  EXPECT_EQ(done["exit"].value("code", -1), 0) << done.dump();
}

// None by default: a spinner delays other cgroups' wake-ups on its CPU, so only the operator may
// grant them. An image that asks gets a pool parked asleep, a warning, and its starts served.
TEST(ApiFwpBudget, WithoutABudgetFromTheOperatorNoStandbySpins) {
  PLUME_SKIP_UNLESS_ROOT();
  Plumed plumed;
  ASSERT_TRUE(plumed.start());
  const std::string alpha = add_tenant(plumed, "alpha");
  auto r = plumed.admin("POST", "/v1/images",
                        json{{"name", "spin"}, {"fwp", {{"binary", PLUME_ECHO_APP}, {"pool_size", 1}, {"spinning_standbys", 1}}}}.dump());
  ASSERT_EQ(r.status, 201) << show(r);
  json w = run_worker(plumed, alpha, {{"fwp", true}, {"image", "spin"}, {"input", {"a", ""}}});
  ASSERT_TRUE(w.contains("id")) << w.dump();
  wait_worker(plumed, alpha, w["id"]);
  EXPECT_EQ(metric(plumed, "plume_fwp_spinning_standbys{tenant=\"alpha\",image=\"spin\"}"), 0);
  const std::string line = log_line(plumed, "fwp.spinning_budget");
  ASSERT_FALSE(line.empty()) << plumed.stderr_text();
  EXPECT_NE(line.find("granted=0"), std::string::npos) << line;
  EXPECT_NE(line.find("budget=0"), std::string::npos) << line;
  expect_a_start_from_the_pool(plumed, alpha, "alpha");
}

// Spinning standbys are granted from one host-wide budget (daemon.spinning_standby_budget): two
// pollers on one CPU would slow each other's starts. The first template takes the budget; the
// next parks its whole pool asleep, says so, and still serves starts from it.
TEST(ApiFwpBudget, SpinningStandbysComeFromAHostWideBudget) {
  PLUME_SKIP_UNLESS_ROOT();
  PlumedOptions options;
  options.config_toml = "[daemon]\nspinning_standby_budget = 1\n";
  Plumed plumed(options);
  ASSERT_TRUE(plumed.start());
  const std::string alpha = add_tenant(plumed, "alpha");
  const std::string beta = add_tenant(plumed, "beta");
  auto r = plumed.admin("POST", "/v1/images",
                        json{{"name", "spin"}, {"fwp", {{"binary", PLUME_ECHO_APP}, {"pool_size", 1}, {"spinning_standbys", 1}}}}.dump());
  ASSERT_EQ(r.status, 201) << show(r);
  for (const std::string* token : {&alpha, &beta}) {
    json w = run_worker(plumed, *token, {{"fwp", true}, {"image", "spin"}, {"input", {"a", ""}}});
    ASSERT_TRUE(w.contains("id")) << w.dump();
    wait_worker(plumed, *token, w["id"]);
  }
  EXPECT_EQ(metric(plumed, "plume_fwp_spinning_standbys{tenant=\"alpha\",image=\"spin\"}"), 1);
  EXPECT_EQ(metric(plumed, "plume_fwp_spinning_standbys{tenant=\"beta\",image=\"spin\"}"), 0);
  const std::string line = log_line(plumed, "fwp.spinning_budget");
  ASSERT_FALSE(line.empty()) << plumed.stderr_text();
  EXPECT_NE(line.find("beta/spin"), std::string::npos) << line;
  EXPECT_NE(line.find("granted=0"), std::string::npos) << line;
  expect_a_start_from_the_pool(plumed, beta, "beta");
}

// A tenant's CPU time is the kernel's count for its cgroup, not a sum of what its workers
// report: a template's own work (kvindex's init indexes 200 000 keys) belongs to no worker, and a
// running instance in its template's cgroup has no figure of its own yet.
TEST_F(ApiFwp, ATenantIsMeteredForItsTemplatesWorkToo) {
  json image = {{"name", "kv"}, {"fwp", {{"binary", PLUME_KVINDEX_APP}, {"pool_size", 0}}}};
  auto r = plumed_.admin("POST", "/v1/images", image.dump());
  ASSERT_EQ(r.status, 201) << show(r);
  json w = run_worker(plumed_, token_, {{"fwp", true}, {"image", "kv"}, {"input", "stats"}});
  ASSERT_TRUE(w.contains("id")) << w.dump();
  const pid_t instance = running_pid(w["id"], token_);
  ASSERT_GT(instance, 0);
  const pid_t template_pid = fwp::parent_pid(instance);  // instances are their template's children
  ASSERT_GT(template_pid, 0);
  const auto template_usage = fwp::process_usage(template_pid);
  ASSERT_TRUE(template_usage);
  const auto template_cpu = static_cast<int64_t>(template_usage->cpu_ns);
  ASSERT_GT(template_cpu, 0) << "kvindex's init took no measurable CPU";
  auto stats = json_of(plumed_.request("GET", "/v1/stats", token_));
  ASSERT_EQ(stats["tenants"].size(), 1u) << stats.dump();
  EXPECT_EQ(stats["tenants"][0].value("workers_running", -1), 1);
  EXPECT_GE(stats["tenants"][0].value("cpu_ns", int64_t{0}), template_cpu) << stats.dump();
  // The running instance has no cgroup of its own: its figure is its own process's, not the CPU
  // of Plume's whole subtree (which it was given while running, template's init and all).
  auto cur = json_of(plumed_.request("GET", "/v1/workers/" + w["id"].get<std::string>(), token_));
  EXPECT_LT(cur.value("cpu_ns", int64_t{-1}), template_cpu) << cur.dump();
}

// A running instance in its template's cgroup (no group of its own) is metered from its own
// process, the kernel's count, rather than shown as 0 until its template reports its rusage.
TEST_F(ApiFwp, ARunningInstanceIsMeteredFromItsOwnProcess) {
  json image = {{"name", "probe"}, {"fwp", {{"binary", PLUME_PROBE_APP}, {"pool_size", 0}}}};
  auto r = plumed_.admin("POST", "/v1/images", image.dump());
  ASSERT_EQ(r.status, 201) << show(r);
  constexpr int64_t kBurnMs = 80, kTouchMiB = 32;
  json w = run_worker(plumed_, token_,
                      {{"fwp", true}, {"image", "probe"},
                       {"input", {"burn " + std::to_string(kBurnMs), "touch " + std::to_string(kTouchMiB)}}});
  ASSERT_TRUE(w.contains("id")) << w.dump();
  const std::string id = w["id"];
  // It keeps running (no empty message ends it): looked at until both figures show, 10 s at most.
  const int64_t cpu_floor = (kBurnMs - 10) * 1000000, memory_floor = kTouchMiB << 20;
  json cur;
  bool shown = false;
  for (auto end = std::chrono::steady_clock::now() + std::chrono::seconds(10);
       !shown && std::chrono::steady_clock::now() < end;) {
    cur = json_of(plumed_.request("GET", "/v1/workers/" + id, token_));
    if (cur.value("state", std::string()) != "running") break;
    shown = cur.value("cpu_ns", int64_t{0}) >= cpu_floor && cur.value("peak_memory_bytes", int64_t{0}) >= memory_floor;
    if (!shown) ::poll(nullptr, 0, 20);
  }
  ASSERT_TRUE(shown) << cur.dump();
  EXPECT_EQ(cur.value("state", std::string()), "running") << cur.dump();
  auto stats = json_of(plumed_.request("GET", "/v1/stats", token_));
  ASSERT_EQ(stats["tenants"].size(), 1u) << stats.dump();
  EXPECT_GE(stats["tenants"][0].value("peak_memory_bytes", int64_t{0}), memory_floor) << stats.dump();
  // Once it ends, its template's report: not below what it showed while running.
  r = plumed_.request("POST", "/v1/workers/" + id + "/signal", token_, json{{"signal", "TERM"}}.dump());
  EXPECT_EQ(r.status, 202) << show(r);
  json done = wait_worker(plumed_, token_, id);
  EXPECT_GE(done.value("cpu_ns", int64_t{0}), cur.value("cpu_ns", int64_t{0})) << done.dump();
  EXPECT_GE(done.value("peak_memory_bytes", int64_t{0}), cur.value("peak_memory_bytes", int64_t{0})) << done.dump();
}

// fwp.huge_text reaches the template: its instances run on its code moved onto a huge page.
TEST_F(ApiFwp, AHugeTextImagesInstancesRunOnItsCodeOnAHugePage) {
  std::ifstream thp("/sys/kernel/mm/transparent_hugepage/enabled");
  std::string setting;
  std::getline(thp, setting);
  if (setting.empty() || setting.find("[never]") != std::string::npos)
    GTEST_SKIP() << "no transparent huge pages on this host";
  json image = {{"name", "probe"}, {"fwp", {{"binary", PLUME_PROBE_APP}, {"huge_text", true}}}};
  auto r = plumed_.admin("POST", "/v1/images", image.dump());
  ASSERT_EQ(r.status, 201) << show(r);
  EXPECT_EQ(json_of(r)["fwp"].value("huge_text", false), true) << r.body;
  r = plumed_.admin("POST", "/v1/images", json{{"name", "p2"}, {"fwp", {{"binary", PLUME_PROBE_APP}, {"huge_text", 1}}}}.dump());
  EXPECT_EQ(r.status, 400) << show(r);  // a boolean, not a number
  json w = run_worker(plumed_, token_, {{"fwp", true}, {"image", "probe"}, {"input", {"text", ""}}});
  ASSERT_TRUE(w.contains("id")) << w.dump();
  json done = wait_worker(plumed_, token_, w["id"]);
  EXPECT_EQ(done["exit"].value("code", -1), 0) << done.dump();
  EXPECT_EQ(log(w["id"]), "huge_kb=2048 file=0\n");
  EXPECT_EQ(metric(plumed_, "plume_fwp_text_on_huge_pages{tenant=\"alpha\",image=\"probe\"}"), 1);
}

TEST_F(ApiFwp, SignalledInstanceIsReportedAsSignal) {
  json w = run_worker(plumed_, token_, {{"fwp", true}, {"image", "echo"}, {"input", "x"}});
  ASSERT_TRUE(w.contains("id")) << w.dump();
  auto r = plumed_.request("POST", "/v1/workers/" + w["id"].get<std::string>() + "/signal", token_,
                           json{{"signal", "TERM"}}.dump());
  EXPECT_EQ(r.status, 202) << show(r);
  json done = wait_worker(plumed_, token_, w["id"]);
  EXPECT_EQ(done["exit"].value("cause", std::string()), "signal") << done.dump();
  EXPECT_EQ(done["exit"].value("signal", 0), 15) << done.dump();
}

TEST_F(ApiFwp, RefusesWhatIsNotAnFwpImageOrRequest) {
  auto r = start_worker(plumed_, token_, {{"fwp", true}, {"image", "host"}});
  EXPECT_EQ(r.status, 400) << show(r);
  r = start_worker(plumed_, token_, {{"argv", {"/bin/true"}}, {"input", "x"}});
  EXPECT_EQ(r.status, 400) << show(r);
  // A message larger than the instance's channel holds: the request's fault, refused before a start.
  r = start_worker(plumed_, token_, {{"fwp", true}, {"image", "echo"}, {"input", std::string(70000, 'x')}});
  EXPECT_EQ(r.status, 400) << show(r);
  EXPECT_NE(r.body.find("input[0]"), std::string::npos) << show(r);
  // The image needs an executable app.
  r = plumed_.admin("POST", "/v1/images", json{{"name", "bad"}, {"fwp", {{"binary", "/nonexistent/app"}}}}.dump());
  EXPECT_EQ(r.status, 400) << show(r);
}

TEST_F(ApiFwp, CliRunsAnInstanceAndWaits) {
  std::vector<std::string> env = {"PLUME_SOCKET=" + plumed_.socket(), "PLUME_TOKEN=" + token_};
  CliResult c = run_cli({"run", "--fwp", "echo", "--input", "hello", "--input", "", "--wait"}, env);
  EXPECT_EQ(c.exit_code, 0) << c.out << c.err;
  EXPECT_EQ(c.out, "hello\n") << c.err;
}

TEST_F(ApiFwp, ATenantsImagesShareItsNamespacesButNotTheirRoots) {
  ASSERT_EQ(plumed_.admin("POST", "/v1/images", json{{"name", "echo2"}, {"fwp", {{"binary", PLUME_ECHO_APP}}}}.dump()).status, 201);
  const std::string beta = add_tenant(plumed_, "beta");
  json a1 = run_worker(plumed_, token_, {{"fwp", true}, {"image", "echo"}, {"input", "stay"}});
  json a2 = run_worker(plumed_, token_, {{"fwp", true}, {"image", "echo2"}, {"input", "stay"}});
  json b1 = run_worker(plumed_, beta, {{"fwp", true}, {"image", "echo"}, {"input", "stay"}});
  const pid_t p1 = running_pid(a1.value("id", ""), token_);
  const pid_t p2 = running_pid(a2.value("id", ""), token_);
  const pid_t pb = running_pid(b1.value("id", ""), beta);
  ASSERT_GT(p1, 0);
  ASSERT_GT(p2, 0);
  ASSERT_GT(pb, 0);
  for (const char* ns : {"user", "pid", "net", "ipc", "uts"}) {
    EXPECT_EQ(ns_of(p1, ns), ns_of(p2, ns)) << ns << ": two images of tenant alpha";
    EXPECT_NE(ns_of(p1, ns), ns_of(pb, ns)) << ns << ": tenants alpha and beta";
  }
  EXPECT_NE(ns_of(p1, "mnt"), ns_of(p2, "mnt")) << "each image has its own root";
  // Removing the tenant ends everything in its namespaces, the holder included.
  const std::string alpha_pids = ns_of(p1, "pid");
  ASSERT_EQ(plumed_.admin("DELETE", "/v1/tenants/alpha?force=true").status, 204);
  EXPECT_TRUE(process_gone(p1, 5s));
  EXPECT_TRUE(process_gone(p2, 5s));
  for (int i = 0; i < 100 && processes_in(alpha_pids) > 0; ++i) ::poll(nullptr, 0, 20);  // bounded
  EXPECT_EQ(processes_in(alpha_pids), 0) << "processes left in tenant alpha's pid namespace";
  EXPECT_EQ(json_of(plumed_.request("GET", "/v1/workers/" + b1.value("id", ""), beta)).value("state", ""), "running")
      << "tenant beta's instance went with alpha";
}

// A tenant's first featherweight start answers before its namespace holder runs (plumed does not
// wait for it; the template does). Removing the tenant at once, while the holder may still be
// starting and the instance still queued, leaves plumed with only its spawn helper as a child,
// no zombie, and serving.
TEST_F(ApiFwp, ATenantRemovedAsItsFirstInstanceStartsLeavesNothingBehind) {
  json w = run_worker(plumed_, token_, {{"fwp", true}, {"image", "echo"}, {"input", "stay"}});
  ASSERT_TRUE(w.contains("id")) << w.dump();
  ASSERT_EQ(plumed_.admin("DELETE", "/v1/tenants/alpha?force=true").status, 204);
  // plumed's spawn helper, and nothing else: no zombie, and no clone of the helper's either. A
  // keeper or holder the helper was still cloning is plumed's child (CLONE_PARENT), named like
  // the helper until it execs; cancelled, it is killed and reaped when the helper's answer comes,
  // a moment after the removal. So this waits for the answers first.
  EXPECT_EQ(await_metric(plumed_, "plume_spawn_helper_requests_pending", 0), 0);
  const std::string text = plumed_.stderr_text();
  const size_t at = text.find("event=plumed.spawn_helper pid=");
  ASSERT_NE(at, std::string::npos) << text;
  const std::string helper = "plume-spawn/" + std::to_string(std::stoi(text.substr(at + 30))) + "/";
  auto others = [&] {
    std::vector<std::string> left;
    for (const ChildProcess& c : children_of(plumed_.pid())) {
      const std::string who = c.comm + "/" + std::to_string(c.pid) + "/";
      if (who != helper || c.state == "Z") left.push_back(who + c.state);
    }
    return left;
  };
  for (int i = 0; i < 250 && !others().empty(); ++i) ::poll(nullptr, 0, 20);  // bounded: 5 s
  EXPECT_EQ(others(), std::vector<std::string>{}) << plumed_.stderr_text();
  EXPECT_EQ(plumed_.admin("GET", "/v1/health").status, 200);
  // A new tenant of the same name starts from scratch: a new holder, a new template.
  const std::string again = add_tenant(plumed_, "alpha");
  json done = run_worker(plumed_, again, {{"fwp", true}, {"image", "echo"}, {"input", {"hello", ""}}});
  ASSERT_TRUE(done.contains("id")) << done.dump();
  json ended = wait_worker(plumed_, again, done["id"]);
  EXPECT_EQ(ended.value("state", ""), "exited") << ended.dump();
  // The removal ended the template first, then the holder: no template reported its keeper's
  // death (which the holder's end causes) as a failure.
  EXPECT_EQ(plumed_.stderr_text().find("event=template.failed"), std::string::npos) << plumed_.stderr_text();
}

TEST_F(ApiFwp, ShutdownStopsTemplatesAndLeavesNothing) {
  json w = run_worker(plumed_, token_, {{"fwp", true}, {"image", "echo"}, {"input", "stay"}});
  ASSERT_TRUE(w.contains("id")) << w.dump();
  pid_t pid = 0;
  for (int i = 0; i < 100 && pid <= 0; ++i) {  // the pid is known once the template has forked
    auto cur = json_of(plumed_.request("GET", "/v1/workers/" + w["id"].get<std::string>(), token_));
    pid = cur.value("pid", 0);
    if (pid <= 0) ::poll(nullptr, 0, 20);  // bounded: at most 100 looks
  }
  ASSERT_GT(pid, 0);
  const std::string tenant_pids = ns_of(pid, "pid");
  auto code = plumed_.stop(SIGTERM, 20s);
  ASSERT_TRUE(code.has_value());
  EXPECT_EQ(*code, 0) << plumed_.stderr_text();
  EXPECT_TRUE(process_gone(pid, 5s));
  // The tenant's namespace holder (pid 1 there) went too: nothing is left in its pid namespace.
  for (int i = 0; i < 100 && processes_in(tenant_pids) > 0; ++i) ::poll(nullptr, 0, 20);  // bounded
  EXPECT_EQ(processes_in(tenant_pids), 0);
  EXPECT_TRUE(cgroup_dirs_under(plumed_.cgroup_parent()).empty()) << plumed_.stderr_text();
}

}  // namespace
}  // namespace plume::test
