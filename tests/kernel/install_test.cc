// `cmake --install`: an installed plumed starts the binaries it needs from ../libexec/plume, and a
// tenant's app builds from the installed libplume alone (plume/plume.h and libplume.a) and serves
// as a featherweight image.
#include <stdio.h>
#include <sys/wait.h>

#include <fstream>
#include <iterator>
#include <string>

#include "e2e.h"
#include "support/temp_dir.h"

namespace plume::test {
namespace {

// Runs `command` with /bin/sh: its exit status, and what it printed (stderr too) in `out`.
int run_shell(const std::string& command, std::string& out) {
  out.clear();
  FILE* p = ::popen((command + " 2>&1").c_str(), "r");
  if (p == nullptr) return -1;
  char buf[4096];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, p)) > 0;) out.append(buf, n);
  const int status = ::pclose(p);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST(Install, AnInstalledPlumedServesAnAppBuiltFromTheInstalledLibplume) {
  PLUME_SKIP_UNLESS_ROOT();
  TempDir dir("install");
  const std::string prefix = dir.path() + "/usr";
  std::string out;
  ASSERT_EQ(run_shell("cmake --install '" PLUME_BINARY_DIR "' --prefix '" + prefix + "'", out), 0) << out;
  // echo's source against the installed header and library only (static, as Plume's apps are).
  const std::string app = dir.path() + "/echo";
  ASSERT_EQ(run_shell("'" PLUME_CXX "' -std=c++20 -O2 -static -I'" + prefix + "/include' '" PLUME_SOURCE_DIR
                      "/apps/echo/echo.cc' '" + prefix + "/lib/libplume.a' -luring -o '" + app + "'",
                      out),
            0)
      << out;

  PlumedOptions options;
  options.binary = prefix + "/bin/plumed";
  Plumed plumed(options);
  ASSERT_TRUE(plumed.start());
  EXPECT_NE(plumed.stderr_text().find("binary=" + prefix + "/libexec/plume/plume-spawn"), std::string::npos)
      << plumed.stderr_text();
  const std::string token = add_tenant(plumed, "alpha");
  json image = {{"name", "echo"}, {"fwp", {{"binary", app}, {"pool_size", 1}}}};
  auto r = plumed.admin("POST", "/v1/images", image.dump());
  ASSERT_EQ(r.status, 201) << show(r);
  json w = run_worker(plumed, token, {{"fwp", true}, {"image", "echo"}, {"input", {"installed", ""}}});
  ASSERT_TRUE(w.contains("id")) << w.dump();
  json done = wait_worker(plumed, token, w["id"]);
  EXPECT_EQ(done["exit"].value("cause", std::string()), "exit") << done.dump();
  EXPECT_EQ(done["exit"].value("code", -1), 0) << done.dump();
  auto logs = plumed.request("GET", "/v1/workers/" + w["id"].get<std::string>() + "/logs?stream=stdout", token);
  EXPECT_EQ(logs.body, "installed\n");
  // The tenant's namespace holder came from libexec too: no fallback to namespaces per template.
  EXPECT_EQ(plumed.stderr_text().find("plume-ns-holder not found"), std::string::npos) << plumed.stderr_text();
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// The systemd unit runs the plumed installed beside it on the installed configuration, which
// starts with no tenant (no well-known token is live) and which a later install leaves alone; a
// tenant added then runs the installed example app, and is still there after a restart.
TEST(Install, TheSystemdUnitRunsTheInstalledPlumedOnTheInstalledConfig) {
  PLUME_SKIP_UNLESS_ROOT();
  TempDir dir("install");
  const std::string prefix = dir.path() + "/usr";
  const std::string install = "cmake --install '" PLUME_BINARY_DIR "' --prefix '" + prefix + "'";
  std::string out;
  ASSERT_EQ(run_shell(install, out), 0) << out;
  const std::string unit_path = prefix + "/lib/systemd/system/plumed.service";
  const std::string config = prefix + "/etc/plume/plumed.toml";
  const std::string unit = read_text(unit_path);
  ASSERT_FALSE(unit.empty()) << "no unit at " << unit_path << "; install said:\n" << out;
  EXPECT_NE(unit.find("\nType=notify\n"), std::string::npos) << unit;
  EXPECT_NE(unit.find("\nExecStart=" + prefix + "/bin/plumed --config " + config + "\n"), std::string::npos) << unit;
  // systemd's own check, where the host has it: unknown keys, bad values, a missing binary.
  if (run_shell("command -v systemd-analyze", out) == 0) {
    EXPECT_EQ(run_shell("systemd-analyze verify '" + unit_path + "'", out), 0) << out;
    EXPECT_EQ(out, "") << out;
  }

  // What ExecStart runs, under a stand-in runtime dir and cgroup parent.
  PlumedOptions options;
  options.binary = prefix + "/bin/plumed";
  options.extra_args = {"--config", config};
  Plumed plumed(options);
  ASSERT_TRUE(plumed.start());
  auto tenants = plumed.admin("GET", "/v1/tenants");
  ASSERT_EQ(tenants.status, 200) << show(tenants);
  const json listed = json_of(tenants);
  ASSERT_TRUE(listed.contains("tenants") && listed["tenants"].is_array()) << tenants.body;
  EXPECT_TRUE(listed["tenants"].empty()) << tenants.body;
  // A tenant added at run time serves the installed example app.
  const std::string token = add_tenant(plumed, "beta");
  json image = {{"name", "kv"}, {"fwp", {{"binary", prefix + "/libexec/plume/examples/plume_kvindex"}}}};
  auto r = plumed.admin("POST", "/v1/images", image.dump());
  ASSERT_EQ(r.status, 201) << show(r);
  json w = run_worker(plumed, token, {{"fwp", true}, {"image", "kv"}, {"input", {"stats", ""}}});
  ASSERT_TRUE(w.contains("id")) << w.dump();
  json done = wait_worker(plumed, token, w["id"]);
  EXPECT_EQ(done["exit"].value("code", -1), 0) << done.dump();
  auto logs = plumed.request("GET", "/v1/workers/" + w["id"].get<std::string>() + "/logs?stream=stdout", token);
  EXPECT_NE(logs.body.find("init_count=1 "), std::string::npos) << logs.body;
  EXPECT_NE(logs.body.find("keys=200000"), std::string::npos) << logs.body;
  EXPECT_EQ(plumed.stop(SIGTERM), 0) << plumed.stderr_text();

  // The installed config keeps what the API added under the prefix's var/lib/plume: a restart
  // (`systemctl restart`, or Restart=on-failure) brings the tenant and its image back.
  EXPECT_NE(read_text(config).find("\nstate_dir = \"" + prefix + "/var/lib/plume\""), std::string::npos)
      << read_text(config);
  EXPECT_NE(read_text(prefix + "/var/lib/plume/api-state.json").find("\"beta\""), std::string::npos);
  ASSERT_TRUE(plumed.start()) << plumed.stderr_text();
  EXPECT_EQ(plumed.request("GET", "/v1/workers", token).status, 200);
  EXPECT_NE(plumed.admin("GET", "/v1/images").body.find("\"kv\""), std::string::npos);
  EXPECT_EQ(plumed.stop(SIGTERM), 0) << plumed.stderr_text();

  // The operator's edit survives a second install.
  { std::ofstream(config, std::ios::app) << "# edited by the operator\n"; }
  ASSERT_EQ(run_shell(install, out), 0) << out;
  EXPECT_NE(read_text(config).find("# edited by the operator\n"), std::string::npos);
}

}  // namespace
}  // namespace plume::test
