// With a state_dir, what the API adds outlasts plumed: tenants and images added at run time come
// back after a restart with the same tokens and uid ranges, and go for good once removed. The
// config file wins a name it shares; a state file that does not parse stops plumed and is left
// as it was; an entry that no longer loads is kept for the operator; and an addition that cannot
// be written is not made at all.
#include <signal.h>
#include <sys/stat.h>

#include <cstdint>
#include <cstring>
#include <fstream>
#include <sstream>

#include "e2e.h"
#include "support/notify_socket.h"

namespace plume::test {
namespace {

class ApiStateTest : public ::testing::Test {
 protected:
  void SetUp() override { PLUME_SKIP_UNLESS_ROOT(); }

  // A plumed that keeps its API additions in <dir_>/state, started with `config_toml` if given.
  std::unique_ptr<Plumed> make_plumed(const std::string& config_toml = {}) {
    PlumedOptions options;
    options.extra_args = {"--state-dir", state_dir()};
    options.config_toml = config_toml;
    return std::make_unique<Plumed>(options);
  }
  std::string state_dir() const { return dir_.path() + "/state"; }
  std::string state_file() const { return state_dir() + "/api-state.json"; }
  std::string state_text() const {
    std::ifstream in(state_file());
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
  }
  json state_json() const { return json::parse(state_text(), nullptr, false); }
  static std::vector<std::string> names_in(const json& state, const char* key) {
    std::vector<std::string> out;
    if (state.is_object() && state.contains(key))
      for (const json& entry : state[key]) out.push_back(entry.value("name", ""));
    return out;
  }
  static json find_named(Plumed& p, const std::string& path, const char* key, const std::string& name) {
    auto list = json_of(p.admin("GET", path));
    for (const json& entry : list.value(key, json::array()))
      if (entry.value("name", "") == name) return entry;
    return json();
  }
  // The last `event=<event>` line plumed logged.
  static std::string last_line(const Plumed& p, const std::string& event) {
    const std::string text = p.stderr_text();
    const size_t at = text.rfind("event=" + event + " ");
    if (at == std::string::npos) return "";
    const size_t begin = text.rfind('\n', at) + 1;  // npos + 1 == 0: the first line
    return text.substr(begin, text.find('\n', at) - begin);
  }

  TempDir dir_{"api-state"};
};

TEST_F(ApiStateTest, WhatTheApiAddedComesBackAfterARestartAndGoesOnceRemoved) {
  auto plumed = make_plumed();
  ASSERT_TRUE(plumed->start());
  const std::string token = add_tenant(*plumed, "later", {{"memory", "64M"}});
  const json image = {{"name", "echo"}, {"fwp", {{"binary", PLUME_ECHO_APP}, {"pool_size", 1}}}};
  ASSERT_EQ(plumed->admin("POST", "/v1/images", image.dump()).status, 201);
  const json before = find_named(*plumed, "/v1/tenants", "tenants", "later");
  ASSERT_TRUE(before.is_object());

  // The file holds tokens: only root reads it.
  struct stat st{};
  ASSERT_EQ(::stat(state_file().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  ASSERT_EQ(::stat(state_dir().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0700u);
  EXPECT_EQ(state_json().value("version", 0), 1) << state_text();

  ASSERT_EQ(plumed->stop(), 0);
  ASSERT_TRUE(plumed->start()) << plumed->stderr_text();
  EXPECT_NE(last_line(*plumed, "plumed.state").find("restored=\"tenant later, image echo\""), std::string::npos)
      << plumed->stderr_text();
  const json after = find_named(*plumed, "/v1/tenants", "tenants", "later");
  ASSERT_TRUE(after.is_object()) << "the tenant did not come back";
  EXPECT_EQ(after["uid_base"], before["uid_base"]);
  EXPECT_EQ(after["limits"].value("memory_bytes", uint64_t{0}), uint64_t{64} << 20) << after.dump();
  // Its token works, and an instance of the image it left behind runs.
  json w = run_worker(*plumed, token, {{"fwp", true}, {"image", "echo"}, {"input", {"hi", ""}}});
  ASSERT_TRUE(w.contains("id")) << w.dump();
  json done = wait_worker(*plumed, token, w["id"]);
  EXPECT_EQ(done["exit"].value("code", -1), 0) << done.dump();

  ASSERT_EQ(plumed->admin("DELETE", "/v1/tenants/later").status, 204);
  ASSERT_EQ(plumed->admin("DELETE", "/v1/images/echo").status, 204);
  EXPECT_TRUE(names_in(state_json(), "tenants").empty()) << state_text();
  EXPECT_TRUE(names_in(state_json(), "images").empty()) << state_text();
  ASSERT_EQ(plumed->stop(), 0);
  ASSERT_TRUE(plumed->start());
  EXPECT_EQ(plumed->request("GET", "/v1/workers", token).status, 401);
  EXPECT_TRUE(find_named(*plumed, "/v1/images", "images", "echo").is_null());
}

TEST_F(ApiStateTest, AChangedTenantAndImageComeBackAsChanged) {
  auto plumed = make_plumed();
  ASSERT_TRUE(plumed->start());
  const std::string old_token = add_tenant(*plumed, "moved");
  const std::string new_token = "moved-new-token-0123456789";
  auto r = plumed->admin("PATCH", "/v1/tenants/moved", json{{"token", new_token}, {"limits", {{"memory", "96M"}}}}.dump());
  ASSERT_EQ(r.status, 200) << show(r);
  const json image = {{"name", "echo"}, {"fwp", {{"binary", PLUME_ECHO_APP}, {"pool_size", 1}}}};
  ASSERT_EQ(plumed->admin("POST", "/v1/images", image.dump()).status, 201);
  ASSERT_EQ(plumed->admin("PATCH", "/v1/images/echo", R"({"fwp": {"pool_size": 3}})").status, 200);
  const json kv = {{"name", "kv"}, {"fwp", {{"binary", PLUME_ECHO_APP}, {"pool_size", 1}}}};
  ASSERT_EQ(plumed->admin("POST", "/v1/images", kv.dump()).status, 201);
  ASSERT_EQ(plumed->admin("PUT", "/v1/images/kv", json{{"fwp", {{"binary", PLUME_KVINDEX_APP}, {"pool_size", 2}}}}.dump()).status, 200);
  ASSERT_EQ(plumed->stop(), 0);
  ASSERT_TRUE(plumed->start());
  const json replaced = find_named(*plumed, "/v1/images", "images", "kv");
  EXPECT_EQ(replaced["fwp"].value("binary", ""), PLUME_KVINDEX_APP) << replaced.dump();
  EXPECT_EQ(replaced["fwp"].value("pool_size", -1), 2) << replaced.dump();
  EXPECT_EQ(plumed->request("GET", "/v1/workers", new_token).status, 200);
  EXPECT_EQ(plumed->request("GET", "/v1/workers", old_token).status, 401);
  EXPECT_EQ(find_named(*plumed, "/v1/tenants", "tenants", "moved")["limits"].value("memory_bytes", uint64_t{0}),
            uint64_t{96} << 20);
  EXPECT_EQ(find_named(*plumed, "/v1/images", "images", "echo")["fwp"].value("pool_size", -1), 3);
}

TEST_F(ApiStateTest, TheConfigFileWinsANameItShares) {
  std::string api_token;
  {
    auto plumed = make_plumed();
    ASSERT_TRUE(plumed->start());
    api_token = add_tenant(*plumed, "shared");
    ASSERT_EQ(plumed->stop(), 0);
  }
  // The operator now names "shared" in the file, with a token and range of their own.
  const std::string file_token = "shared-file-token-0123456789";
  auto plumed = make_plumed("[[tenant]]\nname = \"shared\"\ntoken = \"" + file_token + "\"\nuid_base = 800000\n");
  ASSERT_TRUE(plumed->start()) << plumed->stderr_text();
  EXPECT_EQ(plumed->request("GET", "/v1/workers", file_token).status, 200);
  EXPECT_EQ(plumed->request("GET", "/v1/workers", api_token).status, 401);
  EXPECT_EQ(find_named(*plumed, "/v1/tenants", "tenants", "shared").value("uid_base", 0u), 800000u);
  EXPECT_NE(last_line(*plumed, "plumed.state").find("superseded_by_config=\"tenant shared\""), std::string::npos)
      << plumed->stderr_text();
  EXPECT_TRUE(names_in(state_json(), "tenants").empty()) << state_text();
}

TEST_F(ApiStateTest, ANameTheFileTakesOnAtAReloadLeavesTheStateFile) {
  TempDir notify_dir("api-state-notify");
  NotifySocket manager(notify_dir.path() + "/notify.sock");
  ASSERT_TRUE(manager.ok()) << std::strerror(errno);
  PlumedOptions options;
  options.extra_args = {"--state-dir", state_dir()};
  options.config_toml = "[daemon]\nlog_level = \"info\"\n";
  options.extra_env = {manager.env()};
  Plumed plumed(options);
  ASSERT_TRUE(plumed.launch());
  auto ready = manager.next(15s);
  ASSERT_TRUE(ready.has_value() && has_line(*ready, "READY=1")) << plumed.stderr_text();
  const std::string api_token = add_tenant(plumed, "moving");
  add_tenant(plumed, "staying");

  const std::string file_token = "moving-file-token-0123456789";
  std::ofstream(plumed.root() + "/plumed.toml", std::ios::trunc)
      << "[[tenant]]\nname = \"moving\"\ntoken = \"" << file_token << "\"\n";
  ASSERT_EQ(::kill(plumed.pid(), SIGHUP), 0);
  for (const char* expected : {"RELOADING=1", "READY=1"}) {
    auto note = manager.next(10s);
    ASSERT_TRUE(note.has_value() && has_line(*note, expected)) << note.value_or("(nothing)");
  }
  // The running tenant took the file's token, and from now on the file brings it back.
  EXPECT_EQ(plumed.request("GET", "/v1/workers", file_token).status, 200);
  EXPECT_EQ(plumed.request("GET", "/v1/workers", api_token).status, 401);
  EXPECT_NE(last_line(plumed, "plumed.state").find("now_in_config=\"tenant moving\""), std::string::npos)
      << plumed.stderr_text();
  EXPECT_EQ(names_in(state_json(), "tenants"), std::vector<std::string>{"staying"}) << state_text();
}

TEST_F(ApiStateTest, AStateFileThatDoesNotParseStopsPlumedAndIsLeftAsItWas) {
  ASSERT_EQ(::mkdir(state_dir().c_str(), 0700), 0);
  const std::string broken = "{\"version\": 1, \"tenants\": [{\"name\": \"half\", \"tok";
  std::ofstream(state_file()) << broken;
  auto plumed = make_plumed();
  EXPECT_EQ(plumed->start_expect_exit(), 1);
  EXPECT_NE(plumed->stderr_text().find(state_file() + ": not a JSON object"), std::string::npos)
      << plumed->stderr_text();
  EXPECT_EQ(state_text(), broken);

  // Valid JSON with an entry the API would refuse is refused too, naming the entry.
  std::ofstream(state_file(), std::ios::trunc)
      << R"({"version": 1, "tenants": [{"name": "short", "token": "x"}], "images": []})";
  EXPECT_EQ(plumed->start_expect_exit(), 1);
  EXPECT_NE(plumed->stderr_text().find("tenant short: token must be at least 8 characters"), std::string::npos)
      << plumed->stderr_text();
}

TEST_F(ApiStateTest, AnEntryThatNoLongerLoadsIsKeptForTheOperator) {
  const std::string rootfs = dir_.path() + "/rootfs";
  ASSERT_EQ(::mkdir(rootfs.c_str(), 0755), 0);
  auto plumed = make_plumed();
  ASSERT_TRUE(plumed->start());
  ASSERT_EQ(plumed->admin("POST", "/v1/images", json{{"name", "fragile"}, {"rootfs", rootfs}}.dump()).status, 201);
  ASSERT_EQ(plumed->stop(), 0);

  ASSERT_EQ(::rmdir(rootfs.c_str()), 0);
  ASSERT_TRUE(plumed->start()) << plumed->stderr_text();
  const std::string line = last_line(*plumed, "plumed.state");
  EXPECT_NE(line.find("level=error"), std::string::npos) << line;
  EXPECT_NE(line.find("failed=\"image fragile: rootfs " + rootfs), std::string::npos) << line;
  EXPECT_TRUE(find_named(*plumed, "/v1/images", "images", "fragile").is_null());
  EXPECT_EQ(names_in(state_json(), "images"), std::vector<std::string>{"fragile"}) << state_text();
  ASSERT_EQ(plumed->stop(), 0);

  // Once the directory is back, so is the image.
  ASSERT_EQ(::mkdir(rootfs.c_str(), 0755), 0);
  ASSERT_TRUE(plumed->start());
  EXPECT_TRUE(find_named(*plumed, "/v1/images", "images", "fragile").is_object()) << plumed->stderr_text();
}

TEST_F(ApiStateTest, WhatCannotBeSavedIsNotAdded) {
  auto plumed = make_plumed();
  ASSERT_TRUE(plumed->start());
  const std::string kept_token = add_tenant(*plumed, "kept");
  ASSERT_EQ(plumed->admin("POST", "/v1/images", json{{"name", "echo"}, {"fwp", {{"binary", PLUME_ECHO_APP}}}}.dump()).status, 201);
  // A directory where the temporary file goes: every save fails from now on.
  ASSERT_EQ(::mkdir((state_file() + ".tmp").c_str(), 0700), 0);
  const std::string before = state_text();

  const std::string token = "unsaved-token-0123456789";
  auto r = plumed->admin("POST", "/v1/tenants", json{{"name", "unsaved"}, {"token", token}}.dump());
  EXPECT_EQ(r.status, 500) << show(r);
  EXPECT_EQ(json_of(r)["error"].value("code", ""), "state_not_saved") << r.body;
  EXPECT_NE(r.body.find("tenant unsaved was not added"), std::string::npos) << r.body;
  EXPECT_TRUE(find_named(*plumed, "/v1/tenants", "tenants", "unsaved").is_null());
  EXPECT_EQ(plumed->request("GET", "/v1/workers", token).status, 401);
  // The name is free again: the rolled-back tenant left nothing behind.
  auto image = plumed->admin("POST", "/v1/images", json{{"name", "unsaved"}, {"fwp", {{"binary", PLUME_ECHO_APP}}}}.dump());
  EXPECT_EQ(image.status, 500) << show(image);
  EXPECT_TRUE(find_named(*plumed, "/v1/images", "images", "unsaved").is_null());

  // A change that cannot be kept is put back.
  auto changed = plumed->admin("PATCH", "/v1/tenants/kept", json{{"token", token}, {"limits", {{"memory", "32M"}}}}.dump());
  EXPECT_EQ(changed.status, 500) << show(changed);
  EXPECT_NE(changed.body.find("tenant kept was not changed"), std::string::npos) << changed.body;
  EXPECT_EQ(plumed->request("GET", "/v1/workers", kept_token).status, 200);
  EXPECT_EQ(plumed->request("GET", "/v1/workers", token).status, 401);
  EXPECT_EQ(tenant_memory_limit(*plumed, "kept"), std::to_string(uint64_t{256} << 20));
  // So is a replacement, before anything of the old image goes.
  auto put = plumed->admin("PUT", "/v1/images/echo", json{{"fwp", {{"binary", PLUME_KVINDEX_APP}}}}.dump());
  EXPECT_EQ(put.status, 500) << show(put);
  EXPECT_NE(put.body.find("image echo was not replaced"), std::string::npos) << put.body;
  EXPECT_EQ(find_named(*plumed, "/v1/images", "images", "echo")["fwp"].value("binary", ""), PLUME_ECHO_APP);

  // A removal goes ahead; the log says it will come back and where from.
  EXPECT_EQ(plumed->admin("DELETE", "/v1/tenants/kept").status, 204);
  EXPECT_EQ(plumed->request("GET", "/v1/workers", kept_token).status, 401);
  const std::string line = last_line(*plumed, "api_state.save");
  EXPECT_NE(line.find("removed=\"tenant kept\""), std::string::npos) << plumed->stderr_text();
  EXPECT_NE(line.find(state_file()), std::string::npos) << line;
  EXPECT_EQ(state_text(), before);
}

}  // namespace
}  // namespace plume::test
