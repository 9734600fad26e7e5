// PATCH /v1/tenants/<name> (`plume tenant set`): a running tenant takes a new token and new limits
// while its workers keep running; what cannot change, or cannot be set, is refused and changes
// nothing.
#include <dirent.h>

#include <cstdint>
#include <map>
#include <tuple>
#include <vector>

#include "e2e.h"

namespace plume::test {
namespace {

class TenantUpdate : public ::testing::Test {
 protected:
  void SetUp() override {
    PLUME_SKIP_UNLESS_ROOT();
    ASSERT_TRUE(plumed_.start());
    token_ = add_tenant(plumed_, "acme", {{"memory", "256M"}, {"pids_max", 100}});
  }
  json acme() {
    auto list = json_of(plumed_.admin("GET", "/v1/tenants"));
    for (const json& t : list.value("tenants", json::array()))
      if (t.value("name", "") == "acme") return t;
    return json();
  }
  Reply patch(const std::string& body, const std::string& name = "acme") {
    return plumed_.admin("PATCH", "/v1/tenants/" + name, body);
  }

  Plumed plumed_;
  std::string token_;
};

TEST_F(TenantUpdate, ANewTokenAndLimitsTakeEffectWhileItsWorkerRuns) {
  json sleeper = run_worker(plumed_, token_, {{"argv", {"/bin/sleep", "30"}}});
  ASSERT_TRUE(sleeper.contains("id")) << sleeper.dump();
  const std::string rotated = "acme-rotated-token-0123456789";
  auto r = patch(json{{"token", rotated}, {"limits", {{"memory", "128M"}, {"max_workers", 4}}}}.dump());
  ASSERT_EQ(r.status, 200) << show(r);
  const json limits = json_of(r)["limits"];
  EXPECT_EQ(limits.value("memory_bytes", uint64_t{0}), uint64_t{128} << 20) << r.body;
  EXPECT_EQ(limits.value("max_workers", 0), 4) << r.body;
  EXPECT_EQ(limits.value("pids_max", 0), 100) << "a limit left out of the body changed: " << r.body;
  // The worker runs on, in a cgroup held to the new limit; the old token is refused at once.
  const std::string path = "/v1/workers/" + sleeper["id"].get<std::string>();
  EXPECT_EQ(plumed_.request("GET", path, token_).status, 401);
  EXPECT_EQ(json_of(plumed_.request("GET", path, rotated)).value("state", ""), "running");
  EXPECT_EQ(tenant_memory_limit(plumed_, "acme"), std::to_string(uint64_t{128} << 20));

  // The same through the CLI.
  auto cli = run_cli({"tenant", "set", "acme", "--pids", "64"},
                     {"PLUME_SOCKET=" + plumed_.socket(), "PLUME_TOKEN=" + plumed_.admin_token()});
  EXPECT_EQ(cli.exit_code, 0) << cli.out << cli.err;
  EXPECT_NE(cli.out.find("acme"), std::string::npos) << cli.out;
  EXPECT_EQ(acme()["limits"].value("pids_max", 0), 64);
  auto nothing = run_cli({"tenant", "set", "acme"}, {"PLUME_SOCKET=" + plumed_.socket(), "PLUME_TOKEN=" + plumed_.admin_token()});
  EXPECT_NE(nothing.exit_code, 0);
  EXPECT_NE(nothing.err.find("nothing to change"), std::string::npos) << nothing.err;
}

// The groups of the tenant's featherweight template and of its instances were made with the
// tenant's limits: they follow a change, a raise included (below the tenant's group, only a lower
// limit would hold them anyway).
TEST_F(TenantUpdate, ATemplateAndItsInstancesFollowTheirTenantsLimits) {
  const json image = {{"name", "echo"}, {"fwp", {{"binary", PLUME_ECHO_APP}, {"pool_size", 2}, {"instance_cgroups", "own"}}}};
  ASSERT_EQ(plumed_.admin("POST", "/v1/images", image.dump()).status, 201);
  json w = run_worker(plumed_, token_, {{"fwp", true}, {"image", "echo"}, {"input", {"hi", ""}}});
  ASSERT_TRUE(w.contains("id")) << w.dump();
  EXPECT_EQ(wait_worker(plumed_, token_, w["id"])["exit"].value("code", -1), 0);
  ASSERT_EQ(await_metric(plumed_, "plume_fwp_pool_ready{tenant=\"acme\",image=\"echo\"}", 2), 2);
  // The instances' own groups: acme/i<N>, those of the parked pool at least.
  auto instance_groups = [&]() {
    std::vector<std::string> out;
    for (const std::string& dir : cgroup_parent_dirs(plumed_.cgroup_parent())) {
      DIR* d = ::opendir((dir + "/acme").c_str());
      if (d == nullptr) continue;
      while (dirent* e = ::readdir(d))
        if (e->d_name[0] == 'i' && e->d_type == DT_DIR) out.push_back(std::string("acme/") + e->d_name);
      ::closedir(d);
      if (!out.empty()) break;  // one hierarchy is enough: v1 makes the same group in each
    }
    return out;
  };
  ASSERT_EQ(tenant_memory_limit(plumed_, "acme/tpl-echo"), std::to_string(uint64_t{256} << 20));

  for (const char* memory : {"512M", "128M"}) {
    SCOPED_TRACE(memory);
    const uint64_t bytes = (memory[0] == '5' ? uint64_t{512} : uint64_t{128}) << 20;
    auto r = patch(json{{"limits", {{"memory", memory}}}}.dump());
    ASSERT_EQ(r.status, 200) << show(r);
    EXPECT_EQ(tenant_memory_limit(plumed_, "acme"), std::to_string(bytes));
    EXPECT_EQ(tenant_memory_limit(plumed_, "acme/tpl-echo"), std::to_string(bytes));
    const auto groups = instance_groups();
    EXPECT_FALSE(groups.empty()) << "no instance group under acme";
    for (const std::string& g : groups) EXPECT_EQ(tenant_memory_limit(plumed_, g), std::to_string(bytes)) << g;
  }
}

// What plumed's configuration names (here the built-in one's tenant "demo") is changed there and
// applied with a reload: changed through the API, the next reload or start would undo it.
TEST_F(TenantUpdate, WhatTheConfigurationNamesIsChangedThere) {
  for (const auto& [method, path, body] : std::vector<std::tuple<std::string, std::string, std::string>>{
           {"PATCH", "/v1/tenants/demo", R"({"token": "demo-rotated-token-0123456789"})"},
           {"DELETE", "/v1/tenants/demo", ""}}) {
    auto r = plumed_.admin(method, path, body);
    EXPECT_EQ(r.status, 409) << method << " " << path << ": " << show(r);
    EXPECT_NE(r.body.find("tenant demo is named in plumed's configuration"), std::string::npos) << r.body;
  }
  EXPECT_EQ(plumed_.request("GET", "/v1/workers", "demo-token-change-me").status, 200);
  // Where each comes from, in the API and the CLI.
  std::map<std::string, std::string> origin;
  for (const json& t : json_of(plumed_.admin("GET", "/v1/tenants")).value("tenants", json::array()))
    origin[t.value("name", "")] = t.value("origin", "");
  EXPECT_EQ(origin["demo"], "config");
  EXPECT_EQ(origin["acme"], "api");
  for (const json& i : json_of(plumed_.admin("GET", "/v1/images")).value("images", json::array())) {
    if (i.value("name", "") == "host") {
      EXPECT_EQ(i.value("origin", ""), "built-in") << i.dump();
    }
  }
  auto ls = run_cli({"tenant", "ls"}, {"PLUME_SOCKET=" + plumed_.socket(), "PLUME_TOKEN=" + plumed_.admin_token()});
  EXPECT_EQ(ls.exit_code, 0) << ls.err;
  EXPECT_NE(ls.out.find("ORIGIN"), std::string::npos) << ls.out;
  EXPECT_NE(ls.out.find("config"), std::string::npos) << ls.out;
}

TEST_F(TenantUpdate, WhatCannotChangeIsRefusedAndChangesNothing) {
  const std::string other_token = add_tenant(plumed_, "other");
  const json before = acme();
  ASSERT_TRUE(before.is_object());
  struct Case {
    std::string body;
    int status;
    std::string says;
  };
  const Case cases[] = {
      {R"({"uid_base": 900000})", 400, "uid_base: cannot change"},
      {R"({"name": "renamed"})", 400, "name: cannot change"},
      {R"({"token": "short"})", 400, "token must be at least 8 characters"},
      {R"({"token": 12345678})", 400, "token"},
      {R"({"limits": {"memory": 0}})", 400, "a limit of 0"},
      {R"({"limits": {"memory": "lots"}})", 400, "memory"},
      {R"({"limits": {"bogus": 1}})", 400, "unknown field"},
      {R"({"bogus": 1})", 400, "unknown field"},
      {R"([1, 2])", 400, "JSON object"},
      {"{", 400, "not valid JSON"},
      {json{{"token", other_token}}.dump(), 409, "token already used by another tenant"},
      {json{{"token", plumed_.admin_token()}}.dump(), 409, "token is the admin token"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.body);
    auto r = patch(c.body);
    EXPECT_EQ(r.status, c.status) << show(r);
    EXPECT_NE(r.body.find(c.says), std::string::npos) << r.body;
  }
  EXPECT_EQ(patch("{}", "nobody").status, 404);
  EXPECT_EQ(plumed_.request("PATCH", "/v1/tenants/acme", token_, R"({"limits": {"max_workers": 99}})").status, 403);

  EXPECT_EQ(acme(), before);
  EXPECT_EQ(plumed_.request("GET", "/v1/workers", token_).status, 200);
  // The other tenant's token is still its own.
  json w = run_worker(plumed_, other_token, {{"argv", {"/bin/true"}}});
  EXPECT_EQ(w.value("tenant", ""), "other") << w.dump();
}

}  // namespace
}  // namespace plume::test
