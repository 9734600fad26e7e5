// SIGHUP (`systemctl reload plumed`): plumed loads its config file again, removes what it no
// longer names and adds what it names anew, gives a running tenant its new token and limits,
// resizes or replaces a changed image, never stops running work (what that leaves is said), and
// changes nothing when the file does not load. Each reload ends with READY=1 to the service
// manager, which is what the tests wait for (a notification socket of their own).
#include <signal.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>

#include "e2e.h"
#include "support/notify_socket.h"

namespace plume::test {
namespace {

constexpr const char* kStayToken = "stay-token-0123456789";
constexpr const char* kRotatedToken = "stay-token-rotated-0123456789";
constexpr const char* kNewToken = "newcomer-token-0123456789";

std::string tenant_toml(const std::string& name, const std::string& token, uint32_t uid_base,
                        const std::string& memory) {
  return "[[tenant]]\nname = \"" + name + "\"\ntoken = \"" + token + "\"\nuid_base = " + std::to_string(uid_base) +
         "\nuid_count = 65536\n[tenant.limits]\nmemory = \"" + memory +
         "\"\npids_max = 64\ncpu_percent = 100\ncpu_weight = 100\nmax_workers = 8\n\n";
}

class ReloadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root: plumed creates cgroups and workers";
    ASSERT_TRUE(manager_.ok()) << std::strerror(errno);
    PlumedOptions options;
    options.config_toml = "[daemon]\nshutdown_grace_ms = 500\n\n" + tenant_toml("stay", kStayToken, 400000, "128M");
    options.extra_env = {manager_.env()};
    plumed_ = std::make_unique<Plumed>(options);
    ASSERT_TRUE(plumed_->launch());
    auto ready = manager_.next(15s);
    ASSERT_TRUE(ready.has_value() && has_line(*ready, "READY=1")) << plumed_->stderr_text();
  }
  // The file plumed was started with (PlumedOptions::config_toml).
  std::string config_path() const { return plumed_->root() + "/plumed.toml"; }
  void rewrite_config(const std::string& toml) const { std::ofstream(config_path(), std::ios::trunc) << toml; }
  // SIGHUP, then the reload's notifications: RELOADING=1, and READY=1 once it is done (returned).
  std::string reload() {
    EXPECT_EQ(::kill(plumed_->pid(), SIGHUP), 0);
    auto reloading = manager_.next(10s);
    EXPECT_TRUE(reloading.has_value() && has_line(*reloading, "RELOADING=1")) << reloading.value_or("(nothing)");
    auto ready = manager_.next(10s);
    EXPECT_TRUE(ready.has_value() && has_line(*ready, "READY=1")) << ready.value_or("(nothing)");
    return ready.value_or("");
  }
  // The last `event=plumed.reload` line plumed logged.
  std::string reload_line() const {
    const std::string text = plumed_->stderr_text();
    const size_t at = text.rfind("event=plumed.reload");
    if (at == std::string::npos) return "";
    const size_t begin = text.rfind('\n', at) + 1;  // npos + 1 == 0: the first line
    return text.substr(begin, text.find('\n', at) - begin);
  }

  std::string memory_limit_of(const std::string& tenant) const { return tenant_memory_limit(*plumed_, tenant); }

  TempDir dir_{"reload"};
  NotifySocket manager_{dir_.path() + "/notify.sock"};
  std::unique_ptr<Plumed> plumed_;
};

TEST_F(ReloadTest, WhatTheFileAddsTakesEffectAndRunningWorkKeepsGoing) {
  json sleeper = run_worker(*plumed_, kStayToken, {{"argv", {"/bin/sleep", "60"}}});
  ASSERT_TRUE(sleeper.contains("id")) << sleeper.dump();

  // A new tenant and a new image; the running tenant's token rotated and its memory limit
  // lowered; the grace period changed.
  rewrite_config("[daemon]\nshutdown_grace_ms = 900\n\n" + tenant_toml("stay", kRotatedToken, 400000, "64M") +
                 tenant_toml("newcomer", kNewToken, 500000, "128M") + "[[image]]\nname = \"kv\"\n[image.fwp]\nbinary = \"" +
                 PLUME_KVINDEX_APP + "\"\n");
  const std::string ready = reload();
  EXPECT_NE(ready.find("reloaded"), std::string::npos) << ready;
  const std::string line = reload_line();
  EXPECT_NE(line.find("added=\"tenant newcomer, image kv\""), std::string::npos) << line;
  EXPECT_NE(line.find("updated=\"tenant stay\""), std::string::npos) << line;
  EXPECT_NE(line.find("kept_as_running=\"\""), std::string::npos) << line;
  EXPECT_NE(line.find("needs_restart=daemon.shutdown_grace_ms"), std::string::npos) << line;
  EXPECT_NE(line.find("failed=\"\""), std::string::npos) << line;

  // The newcomer's token works, and its first worker is an instance of the image added with it.
  json w = run_worker(*plumed_, kNewToken, {{"fwp", true}, {"image", "kv"}, {"input", {"stats", ""}}});
  ASSERT_TRUE(w.contains("id")) << w.dump();
  json done = wait_worker(*plumed_, kNewToken, w["id"]);
  EXPECT_EQ(done["exit"].value("code", -1), 0) << done.dump();
  auto logs = plumed_->request("GET", "/v1/workers/" + w["id"].get<std::string>() + "/logs?stream=stdout", kNewToken);
  EXPECT_NE(logs.body.find("init_count=1 "), std::string::npos) << logs.body;

  // The running tenant: the old token is refused, the new one sees its worker still running.
  const std::string sleeper_path = "/v1/workers/" + sleeper["id"].get<std::string>();
  EXPECT_EQ(plumed_->request("GET", sleeper_path, kStayToken).status, 401);
  auto still = json_of(plumed_->request("GET", sleeper_path, kRotatedToken));
  EXPECT_EQ(still.value("state", ""), "running") << still.dump();
  // Its new memory limit, in the API and in its cgroup, which holds the running worker too.
  auto tenants = json_of(plumed_->admin("GET", "/v1/tenants"));
  bool seen = false;
  for (const json& t : tenants.value("tenants", json::array())) {
    if (t.value("name", "") != "stay") continue;
    seen = true;
    EXPECT_EQ(t["limits"].value("memory_bytes", uint64_t{0}), uint64_t{64} << 20) << t.dump();
  }
  EXPECT_TRUE(seen) << tenants.dump();
  EXPECT_EQ(memory_limit_of("stay"), std::to_string(uint64_t{64} << 20));
}

// A new uid range needs the tenant added again (its workers run mapped to the old one): left as
// it is while a worker runs, done by the first reload once none does.
TEST_F(ReloadTest, AUidRangeChangeWaitsForTheTenantsWorkers) {
  const std::string kv = std::string("[[image]]\nname = \"kv\"\n[image.fwp]\nbinary = \"") + PLUME_KVINDEX_APP +
                         "\"\npool_size = 1\n";
  rewrite_config("[daemon]\nshutdown_grace_ms = 500\n\n" + tenant_toml("stay", kStayToken, 400000, "128M") + kv);
  reload();
  // A template of the tenant's, its namespace holder and its pool: all go with the old range.
  json first = run_worker(*plumed_, kStayToken, {{"fwp", true}, {"image", "kv"}, {"input", {"stats", ""}}});
  ASSERT_TRUE(first.contains("id")) << first.dump();
  wait_worker(*plumed_, kStayToken, first["id"]);
  ASSERT_EQ(await_metric(*plumed_, "plume_fwp_pool_ready{tenant=\"stay\",image=\"kv\"}", 1), 1);
  const std::vector<pid_t> old_template = template_group(*plumed_, "stay", "kv");
  json sleeper = run_worker(*plumed_, kStayToken, {{"argv", {"/bin/sleep", "60"}}});
  ASSERT_TRUE(sleeper.contains("id")) << sleeper.dump();
  rewrite_config("[daemon]\nshutdown_grace_ms = 500\n\n" + tenant_toml("stay", kRotatedToken, 600000, "64M") + kv);
  reload();
  std::string line = reload_line();
  EXPECT_NE(line.find("kept_as_running=\"tenant stay\""), std::string::npos) << line;
  EXPECT_NE(line.find("updated=\"\""), std::string::npos) << line;
  // Nothing of it changed: not the token, not the limit.
  EXPECT_EQ(plumed_->request("GET", "/v1/workers", kStayToken).status, 200);
  EXPECT_EQ(plumed_->request("GET", "/v1/workers", kRotatedToken).status, 401);
  EXPECT_EQ(memory_limit_of("stay"), std::to_string(uint64_t{128} << 20));

  const std::string id = sleeper["id"];
  ASSERT_EQ(plumed_->request("POST", "/v1/workers/" + id + "/signal", kStayToken, R"({"signal":"KILL"})").status, 202);
  wait_worker(*plumed_, kStayToken, id);
  reload();
  line = reload_line();
  EXPECT_NE(line.find("replaced=\"tenant stay\""), std::string::npos) << line;
  EXPECT_NE(line.find("failed=\"\""), std::string::npos) << line;
  EXPECT_EQ(plumed_->request("GET", "/v1/workers", kStayToken).status, 401);
  EXPECT_EQ(memory_limit_of("stay"), std::to_string(uint64_t{64} << 20));
  auto tenants = json_of(plumed_->admin("GET", "/v1/tenants"));
  ASSERT_EQ(tenants["tenants"].size(), 1u) << tenants.dump();
  EXPECT_EQ(tenants["tenants"][0].value("uid_base", 0), 600000) << tenants.dump();
  EXPECT_EQ(tenants["tenants"][0].value("origin", ""), "config") << tenants.dump();
  for (pid_t pid : old_template) EXPECT_TRUE(process_gone(pid, 5s)) << pid;
  // Its workers run in the new range, featherweight ones from a template of the new tenant's.
  json w = run_worker(*plumed_, kRotatedToken, {{"argv", {"/bin/true"}}});
  ASSERT_TRUE(w.contains("id")) << w.dump();
  EXPECT_EQ(wait_worker(*plumed_, kRotatedToken, w["id"]).value("state", ""), "exited");
  json again = run_worker(*plumed_, kRotatedToken, {{"fwp", true}, {"image", "kv"}, {"input", "stats"}});
  ASSERT_TRUE(again.contains("id")) << again.dump();
  EXPECT_EQ(again.value("start_path", ""), "fork") << again.dump();
  const pid_t pid = running_pid(*plumed_, again["id"], kRotatedToken);
  ASSERT_GT(pid, 0);
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  long uid = -1;
  for (std::string entry; std::getline(status, entry);)
    if (entry.rfind("Uid:", 0) == 0) uid = std::stol(entry.substr(4));
  EXPECT_GE(uid, 600000);
  EXPECT_LT(uid, 600000 + 65536);
}

TEST_F(ReloadTest, ATokenAnotherTenantHoldsIsRefused) {
  // A tenant added through the API holds the token the file then gives the running tenant.
  const json newcomer = {{"name", "newcomer"}, {"token", kNewToken}, {"uid_base", 500000}, {"uid_count", 65536}};
  ASSERT_EQ(plumed_->admin("POST", "/v1/tenants", newcomer.dump()).status, 201);
  rewrite_config("[daemon]\nshutdown_grace_ms = 500\n\n" + tenant_toml("stay", kNewToken, 400000, "64M"));
  reload();
  const std::string line = reload_line();
  EXPECT_NE(line.find("failed=\"tenant stay: token already used by another tenant\""), std::string::npos) << line;
  // All or nothing: the running tenant keeps its token and its limit, and the token stays the
  // newcomer's alone.
  EXPECT_EQ(plumed_->request("GET", "/v1/workers", kStayToken).status, 200);
  EXPECT_EQ(memory_limit_of("stay"), std::to_string(uint64_t{128} << 20));
  json sleeper = run_worker(*plumed_, kNewToken, {{"argv", {"/bin/sleep", "30"}}});
  ASSERT_TRUE(sleeper.contains("id")) << sleeper.dump();
  EXPECT_EQ(sleeper.value("tenant", ""), "newcomer") << sleeper.dump();
}

// Tokens can change hands among running tenants in one reload: each takes its limits, then all
// take their tokens at once. A file that gives two tenants one token does not load.
TEST_F(ReloadTest, TwoTenantsSwapTokensInOneReload) {
  const std::string head = "[daemon]\nshutdown_grace_ms = 500\n\n";
  rewrite_config(head + tenant_toml("stay", kStayToken, 400000, "128M") + tenant_toml("newcomer", kNewToken, 500000, "128M"));
  reload();
  ASSERT_NE(reload_line().find("added=\"tenant newcomer\""), std::string::npos) << reload_line();
  rewrite_config(head + tenant_toml("stay", kNewToken, 400000, "64M") + tenant_toml("newcomer", kStayToken, 500000, "128M"));
  reload();
  std::string line = reload_line();
  EXPECT_NE(line.find("updated=\"tenant stay, tenant newcomer\""), std::string::npos) << line;
  EXPECT_NE(line.find("failed=\"\""), std::string::npos) << line;
  EXPECT_EQ(memory_limit_of("stay"), std::to_string(uint64_t{64} << 20));
  json as_stay = run_worker(*plumed_, kNewToken, {{"argv", {"/bin/true"}}});
  EXPECT_EQ(as_stay.value("tenant", ""), "stay") << as_stay.dump();
  json as_newcomer = run_worker(*plumed_, kStayToken, {{"argv", {"/bin/true"}}});
  EXPECT_EQ(as_newcomer.value("tenant", ""), "newcomer") << as_newcomer.dump();

  // A move that counted on a token its holder then kept (its own update failed: a limit of 0 is
  // refused on a running tenant) is refused, and the limits that came with it go back.
  std::string refused_newcomer = tenant_toml("newcomer", kRotatedToken, 500000, "128M");
  refused_newcomer.replace(refused_newcomer.find("pids_max = 64"), 13, "pids_max = 0");
  rewrite_config(head + tenant_toml("stay", kStayToken, 400000, "32M") + refused_newcomer);
  reload();
  line = reload_line();
  EXPECT_NE(line.find("tenant stay: token already used by another tenant"), std::string::npos) << line;
  EXPECT_NE(line.find("tenant newcomer: "), std::string::npos) << line;
  EXPECT_EQ(memory_limit_of("stay"), std::to_string(uint64_t{64} << 20));
  json kept = run_worker(*plumed_, kStayToken, {{"argv", {"/bin/true"}}});
  EXPECT_EQ(kept.value("tenant", ""), "newcomer") << kept.dump();

  rewrite_config(head + tenant_toml("stay", kRotatedToken, 400000, "64M") + tenant_toml("newcomer", kRotatedToken, 500000, "128M"));
  const std::string ready = reload();
  EXPECT_NE(ready.find("STATUS=reload failed: "), std::string::npos) << ready;
  EXPECT_NE(reload_line().find("same token as tenant stay"), std::string::npos) << reload_line();
  json still = run_worker(*plumed_, kNewToken, {{"argv", {"/bin/true"}}});
  EXPECT_EQ(still.value("tenant", ""), "stay") << still.dump();
}

TEST_F(ReloadTest, AnImagesPoolIsResizedInPlaceAndTheRestIsLeft) {
  const std::string base = "[daemon]\nshutdown_grace_ms = 500\n\n" + tenant_toml("stay", kStayToken, 400000, "128M");
  auto image = [](int pool, bool huge_text) {
    return std::string("[[image]]\nname = \"kv\"\n[image.fwp]\nbinary = \"") + PLUME_KVINDEX_APP +
           "\"\npool_size = " + std::to_string(pool) + "\nhuge_text = " + (huge_text ? "true" : "false") + "\n";
  };
  auto pool_of_kv = [&]() {
    for (const json& i : json_of(plumed_->admin("GET", "/v1/images")).value("images", json::array()))
      if (i.value("name", "") == "kv") return i["fwp"].value("pool_size", -1);
    return -1;
  };
  rewrite_config(base + image(1, false));
  reload();
  ASSERT_NE(reload_line().find("added=\"image kv\""), std::string::npos) << reload_line();
  rewrite_config(base + image(3, false));
  reload();
  EXPECT_NE(reload_line().find("updated=\"image kv\""), std::string::npos) << reload_line();
  EXPECT_EQ(pool_of_kv(), 3);
  // The file's image changes through the file only.
  auto patched = plumed_->admin("PATCH", "/v1/images/kv", R"({"fwp": {"pool_size": 5}})");
  EXPECT_EQ(patched.status, 409) << show(patched);
  EXPECT_EQ(pool_of_kv(), 3);
  // Anything else is what its templates were made from. While an instance of it runs, it is left
  // and said so; a reload once none does replaces it, templates and all.
  json running = run_worker(*plumed_, kStayToken, {{"fwp", true}, {"image", "kv"}, {"input", "stats"}});
  ASSERT_TRUE(running.contains("id")) << running.dump();
  ASSERT_GT(running_pid(*plumed_, running["id"], kStayToken), 0);
  const std::vector<pid_t> old_group = template_group(*plumed_, "stay", "kv");
  ASSERT_FALSE(old_group.empty());
  rewrite_config(base + image(2, true));
  reload();
  EXPECT_NE(reload_line().find("kept_as_running=\"image kv\""), std::string::npos) << reload_line();
  EXPECT_EQ(pool_of_kv(), 3);
  const std::string id = running["id"];
  ASSERT_EQ(plumed_->request("POST", "/v1/workers/" + id + "/signal", kStayToken, R"({"signal":"KILL"})").status, 202);
  wait_worker(*plumed_, kStayToken, id);
  reload();
  EXPECT_NE(reload_line().find("replaced=\"image kv\""), std::string::npos) << reload_line();
  EXPECT_EQ(pool_of_kv(), 2);
  for (pid_t pid : old_group) EXPECT_TRUE(process_gone(pid, 5s)) << pid;  // the old template and its pool
  json fresh = run_worker(*plumed_, kStayToken, {{"fwp", true}, {"image", "kv"}, {"input", {"stats", ""}}});
  ASSERT_TRUE(fresh.contains("id")) << fresh.dump();
  EXPECT_EQ(fresh.value("start_path", ""), "fork") << fresh.dump();  // from a new template
  EXPECT_EQ(wait_worker(*plumed_, kStayToken, fresh["id"])["exit"].value("code", -1), 0);
  EXPECT_TRUE(plumed_->stderr_text().find("event=template.failed") == std::string::npos) << plumed_->stderr_text();
}

// A new build of an app installed over the old one (a new file renamed onto its path) is a new
// image: a reload replaces it as it would a changed description, so its templates run the new
// build. An unchanged file and build change nothing.
TEST_F(ReloadTest, ANewBuildOfAnAppIsPickedUpByAReload) {
  const std::string app = dir_.path() + "/app";
  std::filesystem::copy_file(PLUME_KVINDEX_APP, app);
  const std::string file = "[daemon]\nshutdown_grace_ms = 500\n\n" + tenant_toml("stay", kStayToken, 400000, "128M") +
                           "[[image]]\nname = \"app\"\n[image.fwp]\nbinary = \"" + app + "\"\npool_size = 1\n";
  rewrite_config(file);
  reload();
  ASSERT_NE(reload_line().find("added=\"image app\""), std::string::npos) << reload_line();
  auto stats_reply = [&]() {
    json w = run_worker(*plumed_, kStayToken, {{"fwp", true}, {"image", "app"}, {"input", {"stats", ""}}});
    if (!w.contains("id")) return "(no worker: " + w.dump() + ")";
    const std::string id = w["id"];
    wait_worker(*plumed_, kStayToken, id);
    return plumed_->request("GET", "/v1/workers/" + id + "/logs?stream=stdout", kStayToken).body;
  };
  EXPECT_EQ(stats_reply().rfind("init_count=1 ", 0), 0u);  // kvindex
  ASSERT_EQ(await_metric(*plumed_, "plume_fwp_pool_ready{tenant=\"stay\",image=\"app\"}", 1), 1);
  const std::vector<pid_t> old_template = template_group(*plumed_, "stay", "app");
  ASSERT_FALSE(old_template.empty());

  reload();  // the same file, the same build
  EXPECT_NE(reload_line().find("replaced=\"\""), std::string::npos) << reload_line();
  EXPECT_NE(reload_line().find("updated=\"\""), std::string::npos) << reload_line();

  std::filesystem::copy_file(PLUME_ECHO_APP, app + ".new");
  std::filesystem::rename(app + ".new", app);
  reload();
  EXPECT_NE(reload_line().find("replaced=\"image app\""), std::string::npos) << reload_line();
  for (pid_t pid : old_template) EXPECT_TRUE(process_gone(pid, 5s)) << pid;
  EXPECT_EQ(stats_reply(), "stats\n");  // echo
}

// An image the file stops naming goes at the next reload once none of its instances runs,
// templates and warm pools with it.
TEST_F(ReloadTest, AnImageLeftOutOfTheFileIsRemovedWithItsTemplates) {
  const std::string base = "[daemon]\nshutdown_grace_ms = 500\n\n" + tenant_toml("stay", kStayToken, 400000, "128M");
  rewrite_config(base + "[[image]]\nname = \"kv\"\n[image.fwp]\nbinary = \"" + PLUME_KVINDEX_APP + "\"\npool_size = 2\n");
  reload();
  json w = run_worker(*plumed_, kStayToken, {{"fwp", true}, {"image", "kv"}, {"input", {"stats", ""}}});
  ASSERT_TRUE(w.contains("id")) << w.dump();
  wait_worker(*plumed_, kStayToken, w["id"]);
  ASSERT_EQ(await_metric(*plumed_, "plume_fwp_pool_ready{tenant=\"stay\",image=\"kv\"}", 2), 2);
  // An instance still at work keeps it through a reload; the next reload after it ends does not.
  json running = run_worker(*plumed_, kStayToken, {{"fwp", true}, {"image", "kv"}, {"input", "stats"}});
  ASSERT_TRUE(running.contains("id")) << running.dump();
  ASSERT_GT(running_pid(*plumed_, running["id"], kStayToken), 0);
  ASSERT_EQ(await_metric(*plumed_, "plume_fwp_pool_ready{tenant=\"stay\",image=\"kv\"}", 2), 2);
  const std::vector<pid_t> group = template_group(*plumed_, "stay", "kv");
  ASSERT_GE(group.size(), 4u);  // the template, its pool of two, the running instance
  rewrite_config(base);
  reload();
  EXPECT_NE(reload_line().find("not_in_file_kept=\"image kv\""), std::string::npos) << reload_line();
  EXPECT_TRUE(template_group_exists(*plumed_, "stay", "kv"));
  const std::string id = running["id"];
  ASSERT_EQ(plumed_->request("POST", "/v1/workers/" + id + "/signal", kStayToken, R"({"signal":"KILL"})").status, 202);
  wait_worker(*plumed_, kStayToken, id);
  reload();
  EXPECT_NE(reload_line().find("removed=\"image kv\""), std::string::npos) << reload_line();
  EXPECT_FALSE(template_group_exists(*plumed_, "stay", "kv"));
  for (pid_t pid : group) EXPECT_TRUE(process_gone(pid, 5s)) << pid;
  const json images = json_of(plumed_->admin("GET", "/v1/images"));
  for (const json& i : images["images"]) EXPECT_NE(i.value("name", ""), "kv") << images.dump();
  EXPECT_EQ(plumed_->request("POST", "/v1/workers", kStayToken, json{{"fwp", true}, {"image", "kv"}}.dump()).status, 404);
}

TEST_F(ReloadTest, AFileThatDoesNotLoadChangesNothing) {
  rewrite_config("[daemon\nthis is not toml\n" + tenant_toml("newcomer", kNewToken, 500000, "128M"));
  const std::string ready = reload();
  EXPECT_NE(ready.find("STATUS=reload failed: "), std::string::npos) << ready;
  const std::string line = reload_line();
  EXPECT_NE(line.find("level=error"), std::string::npos) << plumed_->stderr_text();
  EXPECT_NE(line.find("then=\"nothing changed\""), std::string::npos) << line;
  EXPECT_EQ(plumed_->request("GET", "/v1/health", "").status, 200);
  auto tenants = json_of(plumed_->admin("GET", "/v1/tenants"));
  ASSERT_TRUE(tenants.contains("tenants")) << tenants.dump();
  ASSERT_EQ(tenants["tenants"].size(), 1u) << tenants.dump();
  EXPECT_EQ(tenants["tenants"][0].value("name", ""), "stay");
}

// A tenant the file stops naming goes at the next reload, unless its workers run: then it is kept
// and named, the API can remove it from then on (the file no longer does), and each later reload
// tries again.
TEST_F(ReloadTest, ATenantLeftOutOfTheFileGoesUnlessItsWorkersRun) {
  auto refused = plumed_->admin("DELETE", "/v1/tenants/stay");
  EXPECT_EQ(refused.status, 409) << show(refused);
  EXPECT_NE(refused.body.find("named in plumed's configuration"), std::string::npos) << refused.body;
  const std::string both = "[daemon]\nshutdown_grace_ms = 500\n\n" + tenant_toml("stay", kStayToken, 400000, "128M") +
                           tenant_toml("newcomer", kNewToken, 500000, "128M");
  rewrite_config(both);
  reload();
  json sleeper = run_worker(*plumed_, kStayToken, {{"argv", {"/bin/sleep", "60"}}});
  ASSERT_TRUE(sleeper.contains("id")) << sleeper.dump();
  json done = run_worker(*plumed_, kNewToken, {{"argv", {"/bin/true"}}});
  ASSERT_TRUE(done.contains("id")) << done.dump();
  wait_worker(*plumed_, kNewToken, done["id"]);

  rewrite_config("[daemon]\nshutdown_grace_ms = 500\n");
  reload();
  const std::string line = reload_line();
  EXPECT_NE(line.find("not_in_file_kept=\"tenant stay\""), std::string::npos) << line;
  EXPECT_NE(line.find("removed=\"tenant newcomer\""), std::string::npos) << line;
  EXPECT_EQ(plumed_->request("GET", "/v1/workers", kNewToken).status, 401);  // its token went with it
  auto tenants = json_of(plumed_->admin("GET", "/v1/tenants"));
  ASSERT_EQ(tenants["tenants"].size(), 1u) << tenants.dump();
  EXPECT_EQ(tenants["tenants"][0].value("origin", ""), "api") << tenants.dump();
  // Its running worker keeps running.
  auto cur = json_of(plumed_->request("GET", "/v1/workers/" + sleeper["id"].get<std::string>(), kStayToken));
  EXPECT_EQ(cur.value("state", ""), "running") << cur.dump();
  auto busy = plumed_->admin("DELETE", "/v1/tenants/stay");
  EXPECT_EQ(busy.status, 409) << show(busy);  // refused for its running worker, not for the file
  EXPECT_NE(busy.body.find("running workers"), std::string::npos) << busy.body;

  reload();  // still running: still kept
  EXPECT_NE(reload_line().find("not_in_file_kept=\"tenant stay\""), std::string::npos) << reload_line();
  const std::string id = sleeper["id"];
  ASSERT_EQ(plumed_->request("POST", "/v1/workers/" + id + "/signal", kStayToken, R"({"signal":"KILL"})").status, 202);
  wait_worker(*plumed_, kStayToken, id);
  reload();
  EXPECT_NE(reload_line().find("removed=\"tenant stay\""), std::string::npos) << reload_line();
  EXPECT_EQ(plumed_->request("GET", "/v1/workers", kStayToken).status, 401);
  reload();  // nothing left to try
  EXPECT_NE(reload_line().find("removed=\"\""), std::string::npos) << reload_line();
  EXPECT_NE(reload_line().find("not_in_file_kept=\"\""), std::string::npos) << reload_line();
}

// Removals come before additions: a token the file moves from a tenant it drops to a new one is
// free by the time the new one is added.
TEST_F(ReloadTest, ATokenMovesFromADroppedTenantToANewOne) {
  rewrite_config("[daemon]\nshutdown_grace_ms = 500\n\n" + tenant_toml("successor", kStayToken, 500000, "128M"));
  reload();
  const std::string line = reload_line();
  EXPECT_NE(line.find("removed=\"tenant stay\""), std::string::npos) << line;
  EXPECT_NE(line.find("added=\"tenant successor\""), std::string::npos) << line;
  EXPECT_NE(line.find("failed=\"\""), std::string::npos) << line;
  auto tenants = json_of(plumed_->admin("GET", "/v1/tenants"));
  ASSERT_EQ(tenants["tenants"].size(), 1u) << tenants.dump();
  EXPECT_EQ(tenants["tenants"][0].value("name", ""), "successor") << tenants.dump();
  json w = run_worker(*plumed_, kStayToken, {{"argv", {"/bin/true"}}});
  ASSERT_TRUE(w.contains("id")) << w.dump();
  EXPECT_EQ(w.value("tenant", ""), "successor") << w.dump();
}

}  // namespace
}  // namespace plume::test
