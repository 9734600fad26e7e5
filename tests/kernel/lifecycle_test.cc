// plumed's lifecycle: graceful SIGTERM leaves nothing behind (processes, cgroups, socket, pid file,
// mounts); after kill -9 the workers die with it and a restart cleans up what it left; two plumeds
// never share a runtime dir.
#include <poll.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <set>

#include "e2e.h"

namespace plume::test {
namespace {

bool exists(const std::string& path) {
  struct stat st{};
  return ::lstat(path.c_str(), &st) == 0;
}

// Names in `dir` other than `allowed`.
std::vector<std::string> entries_of(const std::string& dir, const std::set<std::string>& allowed) {
  std::vector<std::string> out;
  if (auto* d = ::opendir(dir.c_str())) {
    while (auto* e = ::readdir(d)) {
      std::string name = e->d_name;
      if (name != "." && name != ".." && !allowed.count(name)) out.push_back(dir + "/" + name);
    }
    ::closedir(d);
  }
  return out;
}

std::string join(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += s + "\n";
  return out;
}

// A config with a short shutdown grace, so the escalation to SIGKILL is quick to observe.
std::string short_grace_config() {
  return "[daemon]\nlog_level = \"debug\"\nshutdown_grace_ms = 500\n\n"
         "[[tenant]]\nname = \"life\"\ntoken = \"life-token-0123456789\"\nuid_base = 300000\nuid_count = 65536\n\n"
         "[tenant.limits]\nmemory = \"128M\"\npids_max = 64\ncpu_percent = 100\ncpu_weight = 100\nmax_workers = 8\n";
}
PlumedOptions with_config(std::string toml) {
  PlumedOptions o;
  o.config_toml = std::move(toml);
  return o;
}

constexpr const char* kLifeToken = "life-token-0123456789";

TEST(Lifecycle, SigtermStopsWorkersAndLeavesNothingBehind) {
  PLUME_SKIP_UNLESS_ROOT();
  Plumed plumed(with_config(short_grace_config()));
  ASSERT_TRUE(plumed.start());
  EXPECT_TRUE(exists(plumed.socket()));
  EXPECT_TRUE(exists(plumed.runtime_dir() + "/plumed.pid"));
  {
    std::ifstream pid_file(plumed.runtime_dir() + "/plumed.pid");
    pid_t pid = 0;
    pid_file >> pid;
    EXPECT_EQ(pid, plumed.pid());
  }
  // The config's tenant exists with its limits.
  json tenants = json_of(plumed.admin("GET", "/v1/tenants"));
  bool found = false;
  for (const auto& t : tenants["tenants"])
    if (t.value("name", std::string()) == "life") {
      found = true;
      EXPECT_EQ(t["limits"].value("memory_bytes", uint64_t{0}), uint64_t{128} << 20) << t.dump();
      EXPECT_EQ(t["limits"].value("max_workers", 0), 8) << t.dump();
    }
  EXPECT_TRUE(found) << tenants.dump();

  // One worker that has already ended, two still running at shutdown.
  json ended = run_worker(plumed, kLifeToken, {{"argv", {"/bin/sh", "-c", "echo done"}}});
  ASSERT_TRUE(ended.contains("id"));
  EXPECT_EQ(wait_worker(plumed, kLifeToken, ended["id"]).value("state", std::string()), "exited");
  EXPECT_EQ(plumed.request("GET", "/v1/workers/" + ended["id"].get<std::string>() + "/logs", kLifeToken).body, "done\n");
  json polite = run_worker(plumed, kLifeToken, {{"argv", {"/bin/sleep", "60"}}});
  // This one ignores SIGTERM (the ignore disposition survives exec), so only the SIGKILL after
  // the grace period ends it.
  json stubborn = run_worker(plumed, kLifeToken,
                             {{"argv", {"/bin/sh", "-c", "trap '' TERM; echo ready; exec /bin/sleep 60"}}});
  ASSERT_TRUE(polite.contains("pid") && stubborn.contains("pid"));
  // Shut down only once it ignores SIGTERM (before that, SIGTERM would end it at once).
  bool ready = false;
  for (int i = 0; i < 500 && !ready; ++i) {
    ready = plumed.request("GET", "/v1/workers/" + stubborn["id"].get<std::string>() + "/logs", kLifeToken).body == "ready\n";
    if (!ready) ::poll(nullptr, 0, 10);
  }
  ASSERT_TRUE(ready) << "the stubborn worker never reported ready";
  EXPECT_FALSE(cgroup_dirs_under(plumed.cgroup_parent()).empty()) << "no cgroups under " << plumed.cgroup_parent();

  auto t0 = std::chrono::steady_clock::now();
  auto code = plumed.stop(SIGTERM, 500ms + 5000ms);
  auto took = std::chrono::steady_clock::now() - t0;
  ASSERT_TRUE(code.has_value()) << "plumed did not exit within grace + 5 s; stderr:\n" << plumed.stderr_text();
  EXPECT_EQ(*code, 0) << plumed.stderr_text();
  EXPECT_GE(took, 400ms) << "the stubborn worker should have held shutdown for the grace period";
  EXPECT_TRUE(process_gone(polite["pid"].get<pid_t>(), 1000ms));
  EXPECT_TRUE(process_gone(stubborn["pid"].get<pid_t>(), 1000ms));
  EXPECT_EQ(join(cgroup_dirs_under(plumed.cgroup_parent())), "");
  EXPECT_FALSE(exists(plumed.socket()));
  EXPECT_FALSE(exists(plumed.runtime_dir() + "/plumed.pid"));
  EXPECT_FALSE(exists(plumed.runtime_dir() + "/admin.token"));
  EXPECT_EQ(join(mounts_under(plumed.runtime_dir())), "");
  // Nothing else is left in the runtime dir (the lock file may stay: flock needs no cleanup).
  EXPECT_EQ(join(entries_of(plumed.runtime_dir(), {"plumed.lock"})), "");
  EXPECT_NE(plumed.stderr_text().find("event=plumed.ready"), std::string::npos) << plumed.stderr_text();
}

TEST(Lifecycle, SigtermWhileIdleExitsPromptly) {
  PLUME_SKIP_UNLESS_ROOT();
  Plumed plumed;
  ASSERT_TRUE(plumed.start());
  auto code = plumed.stop(SIGINT, 3000ms);
  ASSERT_TRUE(code.has_value());
  EXPECT_EQ(*code, 0) << plumed.stderr_text();
  EXPECT_FALSE(exists(plumed.socket()));
}

TEST(Lifecycle, KillNineTakesWorkersAlongAndRestartCleansUp) {
  PLUME_SKIP_UNLESS_ROOT();
  Plumed plumed(with_config(short_grace_config()));
  ASSERT_TRUE(plumed.start());
  json w = run_worker(plumed, kLifeToken, {{"argv", {"/bin/sleep", "60"}}});
  ASSERT_TRUE(w.contains("pid"));
  pid_t worker_pid = w["pid"].get<pid_t>();
  plumed.kill9();
  EXPECT_TRUE(process_gone(worker_pid, 5000ms)) << "worker " << worker_pid << " outlived plumed";

  // Leave a stale cgroup with a live process in it, as a crash mid-spawn would.
  const auto parent_dirs = cgroup_parent_dirs(plumed.cgroup_parent());
  ASSERT_FALSE(parent_dirs.empty());
  const std::string parent_dir = parent_dirs.front();
  std::string stale_dir = parent_dir + "/stale-from-crash";
  ::mkdir(parent_dir.c_str(), 0755);
  ASSERT_TRUE(::mkdir(stale_dir.c_str(), 0755) == 0 || errno == EEXIST) << stale_dir;
  pid_t squatter = ::fork();
  if (squatter == 0) {
    ::execl("/bin/sleep", "sleep", "60", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ASSERT_GT(squatter, 0);
  { std::ofstream(stale_dir + "/cgroup.procs") << squatter << "\n"; }

  // The socket file from the dead plumed is still there; the restart must replace it.
  ASSERT_TRUE(plumed.start()) << "restart on the same runtime dir and cgroup parent failed";
  EXPECT_EQ(plumed.request("GET", "/v1/health", "").status, 200);
  EXPECT_FALSE(exists(stale_dir)) << "stale cgroup survived the restart";
  int status = 0;
  EXPECT_EQ(::waitpid(squatter, &status, 0), squatter);
  EXPECT_TRUE(WIFSIGNALED(status)) << "the process in the stale cgroup should have been killed";
  if (!WIFSIGNALED(status)) ::kill(squatter, SIGKILL);
  // And it works: a worker runs after the restart.
  json after = run_worker(plumed, kLifeToken, {{"argv", {"/bin/true"}}});
  ASSERT_TRUE(after.contains("id"));
  EXPECT_EQ(wait_worker(plumed, kLifeToken, after["id"]).value("state", std::string()), "exited");
  auto code = plumed.stop();
  ASSERT_TRUE(code.has_value());
  EXPECT_EQ(*code, 0);
}

TEST(Lifecycle, SecondPlumedOnTheSameRuntimeDirRefuses) {
  PLUME_SKIP_UNLESS_ROOT();
  Plumed first;
  ASSERT_TRUE(first.start());
  PlumedOptions shared;
  shared.runtime_dir = first.runtime_dir();
  Plumed second(shared);
  auto code = second.start_expect_exit(10s);
  ASSERT_TRUE(code.has_value()) << "the second plumed kept running";
  EXPECT_EQ(*code, 1) << second.stderr_text();
  EXPECT_NE(second.stderr_text().find("plumed.lock"), std::string::npos) << second.stderr_text();
  // The first one is untouched: socket still served, pid file still its own.
  EXPECT_EQ(first.request("GET", "/v1/health", "").status, 200);
  std::ifstream pid_file(first.runtime_dir() + "/plumed.pid");
  pid_t pid = 0;
  pid_file >> pid;
  EXPECT_EQ(pid, first.pid());
}

}  // namespace
}  // namespace plume::test
